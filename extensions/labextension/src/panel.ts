// The GPU side panel and the status-bar item: both render the same polled model.
import { Widget } from '@lumino/widgets';

import { IDeviceFigures, IGpuSlice, IRuntime } from './api';
import { duration, memory, percent, summary, temperature } from './format';

export interface IState {
  slice: IGpuSlice | null;
  runtime: IRuntime | null;
  error: string | null;
}

function el(tag: string, className: string, text?: string): HTMLElement {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function row(table: HTMLElement, name: string, value: string, key: string): void {
  const tr = el('tr', 'gemhub-gpu-row');
  tr.dataset.key = key;
  tr.appendChild(el('th', '', name));
  tr.appendChild(el('td', '', value));
  table.appendChild(tr);
}

function deviceCard(d: IDeviceFigures): HTMLElement {
  const card = el('div', 'gemhub-gpu-device');
  card.dataset.deviceId = d.id;
  const title = el('div', 'gemhub-gpu-model', `GPU ${d.index} · ${d.model}`);
  if (d.simulated) {
    title.appendChild(el('span', 'gemhub-gpu-simulated', 'simulated'));
  }
  card.appendChild(title);
  const table = el('table', 'gemhub-gpu-figures');
  row(table, 'Memory', memory(d), 'memory');
  if (!d.simulated) {
    row(table, 'Utilisation', percent(d.utilization_percent), 'utilization');
    row(table, 'Temperature', temperature(d.temperature_c), 'temperature');
  }
  if (d.compute_percent < 100) {
    row(table, 'Compute share', `${d.compute_percent}%`, 'compute');
  }
  if (d.mig_profile) {
    row(table, 'MIG profile', d.mig_profile, 'mig');
  }
  card.appendChild(table);
  if (d.simulated) {
    // Nothing measures a simulated device: say so instead of showing made-up load.
    card.appendChild(
      el(
        'div',
        'gemhub-gpu-note',
        'Simulated device: the allocation and memory cap are real limits, but there is no hardware to read utilisation, memory use or temperature from.'
      )
    );
  }
  return card;
}

// "stops in 1 h 20 min" (the same words as gemhub.lab.limits.describe on the server).
export function runtimeText(runtime: IRuntime | null): string | null {
  if (runtime === null || runtime.remaining_seconds === null) {
    return null;
  }
  if (runtime.remaining_seconds <= 0) {
    return runtime.message;
  }
  return `stops in ${duration(runtime.remaining_seconds)}`;
}

export class GpuPanel extends Widget {
  constructor() {
    super();
    this.id = 'gemhub-gpu-panel';
    this.addClass('gemhub-gpu-panel');
    this.title.caption = 'GPU';
    this.title.label = 'GPU';
  }

  render(state: IState): void {
    const root = this.node;
    root.replaceChildren();
    root.appendChild(el('h2', 'gemhub-gpu-heading', 'Accelerator'));
    const stops = runtimeText(state.runtime);
    if (stops !== null) {
      root.appendChild(el('div', 'gemhub-runtime', stops));
    }
    if (state.error !== null) {
      root.appendChild(el('div', 'gemhub-gpu-error', state.error));
    }
    const slice = state.slice;
    if (slice === null) {
      return;
    }
    if (slice.error) {
      root.appendChild(el('div', 'gemhub-gpu-error', slice.error));
    }
    if (slice.devices.length === 0) {
      root.appendChild(el('div', 'gemhub-gpu-none', 'No accelerator'));
      return;
    }
    root.appendChild(el('div', 'gemhub-gpu-spec', `Spec ${slice.spec}`));
    for (const d of slice.devices) {
      root.appendChild(deviceCard(d));
    }
  }
}

export class GpuStatus extends Widget {
  constructor() {
    super();
    this.addClass('gemhub-gpu-status');
    this.node.title = 'GemHub: this environment\'s accelerator';
  }

  render(state: IState): void {
    const stops = runtimeText(state.runtime);
    const text = state.error !== null ? 'GPU: unavailable' : summary(state.slice);
    this.node.textContent = stops === null ? text : `${text} · ${stops}`;
  }
}
