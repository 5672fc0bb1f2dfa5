// Human text for the panel: memory in GiB, durations as "1 h 20 min".
import { IDeviceFigures, IGpuSlice } from './api';

export function gib(mib: number | null): string {
  return mib === null ? '–' : `${(mib / 1024).toFixed(1)} GiB`;
}

export function duration(seconds: number): string {
  const minutes = Math.max(0, Math.ceil(seconds / 60));
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  if (h === 0) {
    return `${m} min`;
  }
  return m === 0 ? `${h} h` : `${h} h ${m} min`;
}

export function percent(value: number | null): string {
  return value === null ? '–' : `${Math.round(value)}%`;
}

export function temperature(value: number | null): string {
  return value === null ? '–' : `${Math.round(value)} °C`;
}

// Memory against the slice's limit; with nothing measured (a simulated device) only the cap.
export function memory(d: IDeviceFigures): string {
  return d.memory_used_mib === null
    ? `${gib(d.memory_limit_mib)} cap`
    : `${gib(d.memory_used_mib)} / ${gib(d.memory_limit_mib)}`;
}

export function deviceLine(d: IDeviceFigures): string {
  const label = d.simulated ? ' (simulated)' : '';
  if (d.simulated) {
    return `${d.model}${label} · ${memory(d)}`;
  }
  return `${d.model}${label} · ${memory(d)} · ${percent(d.utilization_percent)} · ${temperature(d.temperature_c)}`;
}

export function summary(slice: IGpuSlice | null): string {
  if (slice === null) {
    return 'GPU: …';
  }
  if (slice.devices.length === 0) {
    return 'No accelerator';
  }
  const d = slice.devices[0];
  const more = slice.devices.length > 1 ? ` +${slice.devices.length - 1}` : '';
  if (d.simulated) {
    return `${d.model}${more} (simulated) · ${memory(d)}`;
  }
  return `${d.model}${more} · ${memory(d)} · ${percent(d.utilization_percent)}`;
}
