/**
 * A read-only contents drive of executed step notebooks.
 *
 * `StackmagicRuns:RUN/STEP.ipynb` opens the notebook a step left in the
 * artifact store, which may be a bucket the browser cannot (and must not)
 * reach: the server reads it. Changes cannot be saved back: a run's record
 * stays what it was; "Save As" copies it into the project.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { IRun, path, requestAPI } from './api';
import { shortId } from './format';

export const DRIVE_NAME = 'StackmagicRuns';

/**
 * Where the executed notebook of a step opens: `RUN/SHORT · STEP.ipynb`, so that its tab,
 * which shows the file's name, tells two runs' notebooks of the same step apart.
 */
export function stepNotebookPath(run: string, step: string): string {
  return `${DRIVE_NAME}:${run}/${shortId(run)} · ${step}.ipynb`;
}

export class StepNotebookDrive implements Contents.IDrive {
  readonly name = DRIVE_NAME;
  readonly serverSettings = ServerConnection.makeSettings();

  get fileChanged(): ISignal<this, Contents.IChangedArgs> {
    return this._fileChanged;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    this._isDisposed = true;
    Signal.clearData(this);
  }

  async get(localPath: string, options?: Contents.IFetchOptions): Promise<Contents.IModel> {
    const { run, step } = parse(localPath);
    const [record, content] = await Promise.all([
      requestAPI<IRun>(path('runs', run)),
      options?.content === false
        ? null
        : requestAPI<unknown>(path('runs', run, 'steps', step, 'notebook'))
    ]);
    return {
      name: localPath.split('/').pop() as string,
      path: localPath,
      type: 'notebook',
      format: 'json',
      mimetype: 'application/x-ipynb+json',
      content,
      writable: false,
      // the run's times: the notebook was written while it ran
      created: record.started_at,
      last_modified: record.ended_at ?? record.started_at,
      size: undefined
    };
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- a bad path rejects, as in get()
  async getDownloadUrl(localPath: string): Promise<string> {
    const { run, step } = parse(localPath);
    return URLExt.join(
      this.serverSettings.baseUrl,
      'stackmagic/api',
      path('runs', run, 'steps', step, 'notebook')
    );
  }

  newUntitled(): Promise<Contents.IModel> {
    return readOnly();
  }

  delete(): Promise<void> {
    return readOnly();
  }

  rename(): Promise<Contents.IModel> {
    return readOnly();
  }

  save(): Promise<Contents.IModel> {
    return readOnly();
  }

  copy(): Promise<Contents.IModel> {
    return readOnly();
  }

  createCheckpoint(): Promise<Contents.ICheckpointModel> {
    return readOnly();
  }

  listCheckpoints(): Promise<Contents.ICheckpointModel[]> {
    return Promise.resolve([]);
  }

  restoreCheckpoint(): Promise<void> {
    return readOnly();
  }

  deleteCheckpoint(): Promise<void> {
    return readOnly();
  }

  private _fileChanged = new Signal<this, Contents.IChangedArgs>(this);
  private _isDisposed = false;
}

function parse(localPath: string): { run: string; step: string } {
  const match = /^([^/]+)\/(?:[^/]* · )?([^/ ]+)\.ipynb$/.exec(localPath);
  if (!match) {
    throw new Error(`${localPath} names no step notebook: expected RUN/SHORT · STEP.ipynb`);
  }
  return { run: match[1], step: match[2] };
}

/** What every change to the drive gets: a rejected promise, as from a server that refuses. */
function readOnly(): Promise<never> {
  return Promise.reject(
    new Error(
      'executed step notebooks are kept as the run left them: use "Save Notebook As…" to keep a copy'
    )
  );
}
