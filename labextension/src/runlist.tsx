/**
 * The sidebar's runs: each told apart by its id, start time, changed parameters
 * and main metrics; filtered by pipeline and status; picked for comparing;
 * opened in the run view; cancelled while they run.
 */
import {
  caretDownIcon,
  caretRightIcon,
  stopIcon,
  ToolbarButtonComponent
} from '@jupyterlab/ui-components';
import * as React from 'react';

import { IRun, ITrackerLink } from './api';
import { confirmCancel } from './confirm';
import { duration, pairs, shortId, startTime } from './format';
import { RUNS_PAGE, StackmagicModel } from './model';
import type { IPanelActions } from './panel';
import { Attempt, Section } from './section';

const STATUSES: IRun['status'][] = ['running', 'completed', 'failed', 'cancelled', 'preempted'];
/** How many metrics a row shows; the run view and "Compare" show them all. */
const METRICS_SHOWN = 3;

export function Runs(props: {
  model: StackmagicModel;
  actions: IPanelActions;
  attempt: Attempt;
}): JSX.Element {
  const { model, actions } = props;
  const [picked, setPicked] = React.useState<string[]>([]);
  const listed = new Set(model.runs.map(run => run.id));
  const chosen = picked.filter(id => listed.has(id)); // runs no longer listed drop out
  const pick = (id: string, on: boolean) =>
    setPicked(on ? [...chosen, id] : chosen.filter(other => other !== id));
  // a registry the server cannot read fails every request: its message shows once, at the top
  const problem = model.runsError !== model.error ? model.runsError : null;

  const compare = (
    <ToolbarButtonComponent
      className="jp-stackmagic-compare"
      label={chosen.length ? `Compare (${chosen.length})` : 'Compare'}
      tooltip="Compare the checked runs: their differing parameters and their metrics"
      enabled={chosen.length >= 2}
      disabledTooltip="Check two runs or more to compare them"
      onClick={() =>
        // oldest first: the plot reads as the runs went
        actions.compareRuns(
          model.runs
            .filter(run => chosen.includes(run.id))
            .map(run => run.id)
            .reverse()
        )
      }
    />
  );
  return (
    <Section id="runs" title="Runs" actions={compare}>
      <RunFilter model={model} />
      {problem && (
        <div className="jp-stackmagic-refusal" role="alert" aria-label="Runs unavailable">
          {problem}
        </div>
      )}
      {!model.runsError && model.runs.length === 0 && (
        <p className="jp-stackmagic-quiet">
          {model.runFilter.pipeline || model.runFilter.status ? (
            'No run matches the filter.'
          ) : (
            <>
              No runs yet: mark cells with <code>%%step NAME</code> and press "Run as pipeline".
            </>
          )}
        </p>
      )}
      <ul className="jp-stackmagic-runs" aria-label="Runs">
        {model.runs.map(run => (
          <RunRow
            key={run.id}
            run={run}
            picked={chosen.includes(run.id)}
            onPick={on => pick(run.id, on)}
            actions={actions}
            onCancel={props.attempt(async () => {
              if (await confirmCancel(run)) {
                await model.cancelRun(run.id);
              }
            })}
          />
        ))}
      </ul>
      {model.moreRuns && (
        <button
          className="jp-mod-styled jp-stackmagic-more"
          onClick={props.attempt(() => model.showMoreRuns())}
        >
          Show {RUNS_PAGE} more
        </button>
      )}
    </Section>
  );
}

function RunFilter(props: { model: StackmagicModel }): JSX.Element {
  const { model } = props;
  const filter = model.runFilter;
  const pipelines = [...new Set([...model.pipelines, filter.pipeline].filter(Boolean))];
  return (
    <div className="jp-stackmagic-run-filter">
      <select
        className="jp-mod-styled"
        aria-label="Pipeline"
        value={filter.pipeline}
        onChange={event =>
          void model.filterRuns({ ...model.runFilter, pipeline: event.target.value })
        }
      >
        <option value="">All pipelines</option>
        {pipelines.map(name => (
          <option key={name} value={name}>
            {name}
          </option>
        ))}
      </select>
      <select
        className="jp-mod-styled"
        aria-label="Status"
        value={filter.status}
        onChange={event =>
          void model.filterRuns({ ...model.runFilter, status: event.target.value })
        }
      >
        <option value="">Any status</option>
        {STATUSES.map(status => (
          <option key={status} value={status}>
            {status}
          </option>
        ))}
      </select>
    </div>
  );
}

function RunRow(props: {
  run: IRun;
  picked: boolean;
  onPick: (on: boolean) => void;
  onCancel: () => void;
  actions: IPanelActions;
}): JSX.Element {
  const { run, actions } = props;
  const [expanded, setExpanded] = React.useState(false);
  const Caret = expanded ? caretDownIcon : caretRightIcon;
  const done = run.steps.filter(s => ['completed', 'cached'].includes(s.status)).length;
  const parameters = pairs(run.changed_parameters);
  const metrics = pairs(run.metrics, METRICS_SHOWN);
  // the one place a run row is clicked
  const open = () => actions.openRun(run.id);
  return (
    <li className="jp-stackmagic-run" data-run={run.id} data-status={run.status}>
      <div className="jp-stackmagic-run-row">
        <input
          type="checkbox"
          className="jp-stackmagic-pick"
          aria-label={`Pick run ${run.id} to compare`}
          checked={props.picked}
          onChange={event => props.onPick(event.target.checked)}
        />
        <button
          className="jp-stackmagic-icon-button jp-stackmagic-expand"
          aria-label={expanded ? 'Hide the steps' : 'Show the steps'}
          aria-expanded={expanded}
          title={expanded ? 'Hide the steps' : 'Show the steps'}
          onClick={() => setExpanded(!expanded)}
        >
          <Caret.react tag="span" />
        </button>
        <div
          className="jp-stackmagic-run-title"
          role="button"
          tabIndex={0}
          title={`Open run ${run.id} (${run.notebook})`}
          onClick={open}
          onKeyDown={event => {
            if (event.key === 'Enter' || event.key === ' ') {
              event.preventDefault();
              open();
            }
          }}
        >
          <div className="jp-stackmagic-run-line">
            <span className={`jp-stackmagic-status jp-stackmagic-status-${run.status}`}>
              {run.status}
            </span>
            <span className="jp-stackmagic-run-pipeline">{run.pipeline}</span>
            <code className="jp-stackmagic-run-id">{shortId(run.id)}</code>
            <time className="jp-stackmagic-quiet" dateTime={run.started_at}>
              {startTime(run.started_at)}
            </time>
          </div>
          {(parameters.length > 0 || metrics.length > 0) && (
            <div className="jp-stackmagic-run-values">
              {parameters.map(text => (
                <span key={text} className="jp-stackmagic-parameter" title="changed parameter">
                  {text}
                </span>
              ))}
              {metrics.map(text => (
                <span key={text} className="jp-stackmagic-metric" title="metric">
                  {text}
                </span>
              ))}
            </div>
          )}
          <div className="jp-stackmagic-quiet">
            {duration(run)} · {run.stack} · {done}/{run.steps.length} steps
            {run.schedule && (
              <>
                {' · '}
                <span
                  className="jp-stackmagic-run-schedule"
                  title={`Started by schedule ${run.schedule} (\`stackmagic pipeline schedules\`)`}
                >
                  schedule {run.schedule}
                </span>
              </>
            )}
            {run.tracker && <TrackerLink tracker={run.tracker} />}
          </div>
        </div>
        {run.status === 'running' && (
          <ToolbarButtonComponent
            className="jp-stackmagic-cancel"
            icon={stopIcon}
            tooltip={`Cancel run ${shortId(run.id)}`}
            onClick={props.onCancel}
          />
        )}
      </div>
      {run.error && (
        <div className="jp-stackmagic-refusal jp-stackmagic-run-error">{run.error}</div>
      )}
      {expanded && <Steps run={run} actions={actions} />}
    </li>
  );
}

/** The run in its experiment tracker, or why it is not there. */
function TrackerLink(props: { tracker: ITrackerLink }): JSX.Element {
  const { url, note } = props.tracker;
  return (
    <>
      {' · '}
      {url && (
        <a
          className="jp-stackmagic-run-tracker"
          href={url}
          target="_blank"
          rel="noopener noreferrer"
          title={`This run in the experiment tracker: ${url}`}
          onClick={event => event.stopPropagation()}
        >
          tracker
        </a>
      )}
      {note && (
        <span className="jp-stackmagic-run-tracker-note" title={note}>
          {url ? ' (incomplete)' : 'not mirrored'}
        </span>
      )}
    </>
  );
}

function Steps(props: { run: IRun; actions: IPanelActions }): JSX.Element {
  const { run, actions } = props;
  return (
    <ol className="jp-stackmagic-steps" aria-label={`Steps of run ${run.id}`}>
      {run.steps.map(step => (
        <li key={step.name} data-step={step.name} data-status={step.status}>
          <span className={`jp-stackmagic-status jp-stackmagic-status-${step.status}`}>
            {step.status}
          </span>{' '}
          {step.notebook ? (
            <a
              href="#"
              className="jp-stackmagic-link"
              title="Open the executed notebook"
              onClick={event => {
                event.preventDefault();
                actions.openStepNotebook(run.id, step.name);
              }}
            >
              {step.name}
            </a>
          ) : (
            step.name
          )}
          {step.seconds !== null && (
            <span className="jp-stackmagic-quiet"> {step.seconds.toFixed(1)} s</span>
          )}
          {step.error && !run.error?.includes(step.error) && (
            <div className="jp-stackmagic-step-error">{step.error}</div>
          )}
        </li>
      ))}
    </ol>
  );
}
