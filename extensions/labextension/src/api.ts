// Client of the gemhub.lab server extension (GET /gemhub/gpu, GET /gemhub/runtime).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IDeviceFigures {
  id: string;
  index: number;
  model: string;
  simulated: boolean;
  utilization_percent: number | null;
  memory_used_mib: number | null;
  memory_limit_mib: number;
  memory_total_mib: number;
  temperature_c: number | null;
  power_w: number | null;
  compute_percent: number;
  mig_profile: string | null;
}

export interface IGpuSlice {
  spec: string;
  kind: string;
  simulated: boolean;
  devices: IDeviceFigures[];
  error: string | null;
}

export interface IRuntime {
  stop_at: string | null;
  remaining_seconds: number | null;
  message: string;
}

async function getJSON<T>(path: string): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, path);
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response);
  }
  return (await response.json()) as T;
}

export const fetchGpu = (): Promise<IGpuSlice> => getJSON<IGpuSlice>('gemhub/gpu');
export const fetchRuntime = (): Promise<IRuntime> => getJSON<IRuntime>('gemhub/runtime');
