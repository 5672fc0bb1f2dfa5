// GemHub's JupyterLab plugin: a GPU side panel and status-bar item, polling the server
// extension every few seconds (the figures change while a training run goes on).
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IStatusBar } from '@jupyterlab/statusbar';

import { fetchGpu, fetchRuntime } from './api';
import { GpuPanel, GpuStatus, IState } from './panel';

const POLL_MS = 5000;

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@gemhub/lab:gpu',
  description: 'GPU panel: model, memory used / limit, utilisation, temperature of this environment',
  autoStart: true,
  requires: [ILabShell],
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, shell: ILabShell, statusBar: IStatusBar | null) => {
    const panel = new GpuPanel();
    shell.add(panel, 'right', { rank: 900 });
    const status = new GpuStatus();
    if (statusBar) {
      statusBar.registerStatusItem('@gemhub/lab:gpu-status', {
        item: status,
        align: 'left',
        rank: 50
      });
    }
    status.node.addEventListener('click', () => shell.activateById(panel.id));

    const refresh = async (): Promise<void> => {
      const state: IState = { slice: null, runtime: null, error: null };
      try {
        [state.slice, state.runtime] = await Promise.all([fetchGpu(), fetchRuntime()]);
      } catch (reason) {
        state.error = `GPU figures unavailable: ${reason}`;
      }
      panel.render(state);
      status.render(state);
    };
    void refresh();
    window.setInterval(() => void refresh(), POLL_MS);
  }
};

export default plugin;
