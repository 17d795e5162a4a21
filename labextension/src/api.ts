/**
 * The server extension's REST API (`/stackmagic/api/`), typed.
 *
 * Every request goes through Jupyter's `ServerConnection`, so it carries the
 * user's token and the XSRF cookie like any other JupyterLab request.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export type ComponentType =
  'artifact-store' | 'metadata-store' | 'orchestrator' | 'step-operator' | 'experiment-tracker';

export const COMPONENT_TYPES: ComponentType[] = [
  'metadata-store',
  'artifact-store',
  'orchestrator',
  'step-operator',
  'experiment-tracker'
];

/** The flags of `stack register`, by component type. */
export const STACK_FIELDS: Record<ComponentType, string> = {
  'metadata-store': 'metadata_store',
  'artifact-store': 'artifact_store',
  orchestrator: 'orchestrator',
  'step-operator': 'step_operator',
  'experiment-tracker': 'experiment_tracker'
};

export interface IStack {
  name: string;
  active: boolean;
  components: Partial<Record<ComponentType, string>>;
}

export interface IComponent {
  type: ComponentType;
  name: string;
  flavor: string;
  /** Secrets come masked as `********`. */
  options: Record<string, unknown>;
}

export interface IFlavorOption {
  name: string;
  kind: 'string' | 'choice' | 'integer' | 'number' | 'boolean' | 'mapping' | 'list';
  help: string;
  default: unknown;
  required: boolean;
  secret: boolean;
  choices?: string[];
}

export interface IFlavor {
  type: ComponentType;
  flavor: string;
  summary: string;
  options: IFlavorOption[];
}

export type Flavors = Record<ComponentType, IFlavor[]>;

export interface IStepRun {
  name: string;
  status: 'pending' | 'running' | 'completed' | 'cached' | 'failed' | 'skipped' | 'cancelled';
  seconds: number | null;
  error: string | null;
  /** Why the step ran, was cached or skipped. */
  reason?: string | null;
  /** Where the executed notebook is kept; null when the step did not execute. */
  notebook: string | null;
}

export interface IRun {
  id: string;
  pipeline: string;
  notebook: string;
  status: 'running' | 'completed' | 'failed' | 'preempted' | 'cancelled';
  error: string | null;
  started_at: string;
  ended_at: string | null;
  stack: string;
  /** The schedule that started the run; null for a run someone asked for. */
  schedule?: string | null;
  steps: IStepRun[];
  parameters?: Record<string, unknown>;
  /** The parameters given that differ from the notebook's defaults. */
  changed_parameters?: Record<string, unknown>;
  /** Every step's metrics, the last value per name. */
  metrics?: Record<string, unknown>;
  /** The run's twin in the stack's experiment tracker, and why it is not mirrored there. */
  tracker?: ITrackerLink | null;
}

/** Where a run is mirrored: the tracker's page of it; ``note`` when it is not (fully) there. */
export interface ITrackerLink {
  url: string | null;
  run_id: string | null;
  note: string | null;
}

/** A refusal of the server, with its one-line message. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

/** Send a request to `/stackmagic/api/ENDPOINT`; an error answer throws its message. */
export async function requestAPI<T>(
  endpoint: string,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' = 'GET',
  body?: unknown
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'stackmagic', 'api', endpoint);
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new RequestError(`the Jupyter server cannot be reached (${String(error)})`, 0);
  }
  const data = parsed(await response.text());
  if (!response.ok) {
    const said = (data as { message?: unknown } | null)?.message;
    const message =
      typeof said === 'string'
        ? said
        : response.status === 404
          ? 'the stackmagic server extension is not enabled: run `jupyter server extension enable stackmagic.server` and restart JupyterLab'
          : `the Jupyter server answered ${response.status} ${response.statusText}`;
    throw new RequestError(message, response.status);
  }
  return data as T;
}

/** An answer's JSON; null for one that is not JSON (an HTML error page, not the extension's). */
function parsed(text: string): unknown {
  try {
    return text ? (JSON.parse(text) as unknown) : null;
  } catch {
    return null;
  }
}

/** `ENDPOINT/NAME` with the name escaped for a URL. */
export function path(...parts: string[]): string {
  return parts.map(encodeURIComponent).join('/');
}

/** An input or output of a step as the artifact store keeps it. */
export interface IArtifact {
  uri: string;
  materializer: string;
  content_hash: string;
  size: number;
  type_name: string;
}

/** A step of `GET runs/ID`: the listing's fields, its artifacts and metrics. */
export interface IStepDetail extends IStepRun {
  cached_from: string | null;
  attempts: number;
  /** The step operator's job that ran its last try, and the job's page in its console. */
  job_id: string | null;
  job_url: string | null;
  inputs: Record<string, IArtifact>;
  outputs: Record<string, IArtifact>;
  metrics: { name: string; value: number; step?: number }[];
}

/** `GET runs/ID`: `pipeline describe`, and the DAG's edges as `[upstream, step]`. */
export interface IRunDetail extends IRun {
  parameters: Record<string, unknown>;
  overridden: string[];
  options: Record<string, unknown>;
  steps: IStepDetail[];
  edges: [string, string][];
  /** The run's id on a cluster or VM that runs it; null for a run this machine drives. */
  orchestrator_run_id: string | null;
}

/** `GET runs/ID/steps/STEP/outputs/NAME/preview`: a bounded look at an output. */
export interface IPreview {
  name: string;
  type_name: string;
  materializer: string;
  size: number;
  kind: 'table' | 'image' | 'text' | 'json' | 'none';
  truncated: boolean;
  columns?: string[];
  rows?: string[][];
  total_rows?: number | null;
  total_columns?: number;
  mime?: string;
  data?: string;
  text?: string;
  reason?: string;
}
