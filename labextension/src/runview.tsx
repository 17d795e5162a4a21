/**
 * The run view: one run in the main area. Its DAG coloured by status (live
 * while it runs), the selected step's facts, inputs, outputs with previews,
 * metrics and error, the run's parameters; "Cancel run" and "Run again".
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Signal } from '@lumino/signaling';
import * as React from 'react';

import { IPreview, IRunDetail, path, requestAPI } from './api';
import { confirmCancel } from './confirm';
import { shortId } from './format';
import { startRun } from './rundialog';
import { RunDag } from './runview-dag';
import { PreviewState, RunFacts, StepDetails } from './runview-parts';
import { stackmagicIcon } from './icon';

/** The command that opens a run's view: `{run: ID}`. */
export const OPEN_RUN_COMMAND = 'stackmagic:open-run';

/** How often a running run is asked for again: a local one, and one a cluster or a VM runs
 * (each answer then asks the cluster how the run goes). */
const POLL_MS = 1000;
const REMOTE_POLL_MS = 5000;

export interface IRunViewActions {
  openStepNotebook: (run: string, step: string) => void;
  openRun: (run: string) => void;
}

/** The main-area tab of a run: `stackmagic-run-ID`. */
export function runViewId(run: string): string {
  return `stackmagic-run-${run}`;
}

export function createRunView(run: string, actions: IRunViewActions): MainAreaWidget<RunView> {
  const content = new RunView(run, actions);
  const widget = new MainAreaWidget({ content });
  widget.id = runViewId(run);
  widget.addClass('jp-stackmagic-runview-tab');
  widget.title.icon = stackmagicIcon;
  widget.title.label = `Run ${run}`;
  widget.title.closable = true;
  content.changed.connect(() => {
    if (content.run) {
      widget.title.label = `${content.run.pipeline} · ${shortId(content.run.id)}`;
      widget.title.caption = `Run ${content.run.id} of ${content.run.notebook}: ${content.run.status}`;
    }
  });
  return widget;
}

/** What the view shows, kept here so that polling and clicks change one place. */
export class RunView extends ReactWidget {
  constructor(
    readonly runId: string,
    readonly actions: IRunViewActions
  ) {
    super();
    this.addClass('jp-stackmagic-runview');
    void this.refresh();
  }

  readonly changed = new Signal<this, void>(this);
  run: IRunDetail | null = null;
  /** Why the run could not be read or acted on; null once it can. */
  problem: string | null = null;
  selected: string | null = null;
  /** Previews by `STEP/OUTPUT`: an output's record never changes, so each is asked once. */
  readonly previews = new Map<string, PreviewState>();
  busy = false;

  /** Ask for the run now; one request at a time, whoever asks (the timer, a click, a show). */
  refresh(): Promise<void> {
    this._asking ??= this._fetch().finally(() => (this._asking = null));
    return this._asking;
  }

  private async _fetch(): Promise<void> {
    window.clearTimeout(this._timer);
    try {
      this.run = await requestAPI<IRunDetail>(path('runs', this.runId));
      this.problem = null;
    } catch (error) {
      this.problem = (error as Error).message;
    }
    if (this.isDisposed) {
      return;
    }
    if (this.run && !this._picked) {
      // until a step is clicked, the one to watch: the failed one, else the one running
      const notable =
        this.run.steps.find(s => s.status === 'failed') ??
        this.run.steps.find(s => s.status === 'running');
      this.selected = (notable ?? this.run.steps.find(s => s.name === this.selected))?.name ?? null;
      this.selected ??= this.run.steps[0]?.name ?? null;
    }
    this._loadPreviews();
    this.changed.emit();
    this._schedule();
  }

  select(step: string): void {
    this.selected = step;
    this._picked = true;
    this._loadPreviews();
    this.changed.emit();
  }

  /** Ask the server to stop the run, once the user confirms; the view shows it cancelled
   * once it is recorded so. */
  async cancel(): Promise<void> {
    if (!this.run || !(await confirmCancel(this.run))) {
      return;
    }
    if (await this._act(() => requestAPI(path('runs', this.runId, 'cancel'), 'POST', {}))) {
      await this.refresh();
    }
  }

  /**
   * The Run dialog, filled in with this run's parameters and options, for its notebook;
   * what the user keeps or changes runs on the run's stack, and the new run's view opens.
   */
  async runAgain(): Promise<void> {
    const run = this.run;
    if (!run) {
      return;
    }
    const { no_cache, only, from } = run.options;
    await this._act(async () => {
      // the record names the notebook as the server resolved it, which the server takes back
      const started = await startRun(
        run.notebook,
        {
          parameters: run.parameters,
          no_cache: no_cache === true,
          only: typeof only === 'string' ? [only] : undefined,
          from_step: typeof from === 'string' ? from : undefined
        },
        run.stack
      );
      if (started) {
        this.actions.openRun(started);
      }
    });
  }

  dispose(): void {
    window.clearTimeout(this._timer);
    super.dispose();
  }

  render(): JSX.Element {
    return <UseSignal signal={this.changed}>{() => <RunPage view={this} />}</UseSignal>;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._resume();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._resume();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    window.clearTimeout(this._timer);
  }

  /** Seen again: a run that was running went on meanwhile. */
  private _resume(): void {
    if (this.run?.status === 'running') {
      void this.refresh();
    }
  }

  /** Ask again in a second while the run runs and the view is seen; never once it ended. */
  private _schedule(): void {
    const running = this.run ? this.run.status === 'running' : this.problem === null;
    if (running && this._shown() && !this.isDisposed) {
      const delay = this.run?.orchestrator_run_id ? REMOTE_POLL_MS : POLL_MS;
      this._timer = window.setTimeout(() => void this.refresh(), delay);
    }
  }

  /** Whether its tab is the one shown: the view, and every widget it is in, not hidden. */
  private _shown(): boolean {
    for (let widget = this.parent; widget; widget = widget.parent) {
      if (widget.isHidden) {
        return false;
      }
    }
    return this.isAttached && !this.isHidden;
  }

  /** Carry out a click; its refusal stays shown until the next one. */
  private async _act(action: () => Promise<unknown>): Promise<boolean> {
    this.busy = true;
    this.problem = null;
    this.changed.emit();
    try {
      await action();
      return true;
    } catch (error) {
      this.problem = (error as Error).message;
      return false;
    } finally {
      this.busy = false;
      this.changed.emit();
    }
  }

  private _loadPreviews(): void {
    const step = this.run?.steps.find(s => s.name === this.selected);
    if (!step || !['completed', 'cached'].includes(step.status)) {
      return;
    }
    for (const name of Object.keys(step.outputs)) {
      const key = `${step.name}/${name}`;
      if (this.previews.has(key)) {
        continue;
      }
      this.previews.set(key, 'loading');
      requestAPI<IPreview>(path('runs', this.runId, 'steps', step.name, 'outputs', name, 'preview'))
        .then(preview => this.previews.set(key, preview))
        .catch((error: Error) => this.previews.set(key, error))
        .finally(() => {
          if (!this.isDisposed) {
            this.changed.emit();
          }
        });
    }
  }

  private _timer: number | undefined = undefined;
  private _asking: Promise<void> | null = null;
  /** Whether the user chose the step shown, which polling then leaves alone. */
  private _picked = false;
}

function RunPage(props: { view: RunView }): JSX.Element {
  const { view } = props;
  const { run } = view;
  if (!run) {
    return (
      <div className="jp-stackmagic-runview-page">
        {view.problem ? (
          <div className="jp-stackmagic-refusal" role="alert">
            {view.problem}
          </div>
        ) : (
          <p className="jp-stackmagic-quiet">Loading run {view.runId}…</p>
        )}
      </div>
    );
  }
  const step = run.steps.find(s => s.name === view.selected) ?? null;
  return (
    <div className="jp-stackmagic-runview-page" data-run={run.id} data-status={run.status}>
      <header className="jp-stackmagic-runview-header">
        <h1>
          {run.pipeline} <span className="jp-stackmagic-quiet">run {run.id}</span>
        </h1>
        <span className={`jp-stackmagic-status jp-stackmagic-status-${run.status}`}>
          {run.status}
        </span>
        <div className="jp-stackmagic-runview-actions">
          {run.status === 'running' && (
            <button
              className="jp-mod-styled jp-mod-warn"
              disabled={view.busy}
              onClick={() => void view.cancel()}
            >
              Cancel run
            </button>
          )}
          <button
            className="jp-mod-styled jp-mod-accept"
            disabled={view.busy}
            title="Run the notebook again with the parameters and options of this run, or changed ones"
            onClick={() => void view.runAgain()}
          >
            Run again
          </button>
        </div>
      </header>
      {view.problem && (
        <div className="jp-stackmagic-refusal" role="alert">
          {view.problem}
        </div>
      )}
      {run.error && <pre className="jp-stackmagic-runview-error">{run.error}</pre>}
      <div className="jp-stackmagic-runview-dag">
        <RunDag
          steps={run.steps}
          edges={run.edges}
          selected={view.selected}
          onSelect={name => view.select(name)}
        />
      </div>
      <div className="jp-stackmagic-runview-columns">
        {step && (
          <StepDetails
            step={step}
            preview={output => view.previews.get(`${step.name}/${output}`)}
            openNotebook={() => view.actions.openStepNotebook(run.id, step.name)}
          />
        )}
        <RunFacts run={run} />
      </div>
    </div>
  );
}
