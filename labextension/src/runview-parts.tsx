/**
 * The parts of the run view below its DAG: the selected step with previews of
 * its outputs, and the run's facts.
 */
import * as React from 'react';

import { IArtifact, IPreview, IRunDetail, IStepDetail } from './api';

/** A preview as the view has it: asked for, answered, or refused with a reason. */
export type PreviewState = IPreview | Error | 'loading';

/** The run: where and when it ran, and its parameters. */
export function RunFacts(props: { run: IRunDetail }): JSX.Element {
  const { run } = props;
  const names = Object.keys(run.parameters);
  return (
    <section className="jp-stackmagic-runview-section" aria-label="Run">
      <h2>Run</h2>
      <dl className="jp-stackmagic-runview-facts">
        <dt>notebook</dt>
        <dd>{run.notebook}</dd>
        <dt>stack</dt>
        <dd>{run.stack}</dd>
        {run.schedule && (
          <>
            <dt>schedule</dt>
            <dd>started by schedule {run.schedule}</dd>
          </>
        )}
        {run.tracker && (
          <>
            <dt>tracker</dt>
            <dd>
              {run.tracker.url && (
                <a
                  className="jp-stackmagic-run-tracker"
                  href={run.tracker.url}
                  target="_blank"
                  rel="noopener noreferrer"
                >
                  {run.tracker.url}
                </a>
              )}
              {run.tracker.note && (
                <div className="jp-stackmagic-run-tracker-note">{run.tracker.note}</div>
              )}
            </dd>
          </>
        )}
        <dt>started</dt>
        <dd>{when(run.started_at)}</dd>
        <dt>{run.ended_at ? 'ended' : 'running for'}</dt>
        <dd>
          {run.ended_at
            ? `${when(run.ended_at)} (took ${took(seconds(run.started_at, run.ended_at))})`
            : took(seconds(run.started_at, null))}
        </dd>
      </dl>
      <h3>Parameters</h3>
      {names.length === 0 ? (
        <p className="jp-stackmagic-quiet">none</p>
      ) : (
        <table className="jp-stackmagic-runview-table" aria-label="Parameters">
          <tbody>
            {names.map(name => (
              <tr key={name}>
                <th>{name}</th>
                <td>
                  <code>{JSON.stringify(run.parameters[name])}</code>
                  {run.overridden.includes(name) && (
                    <span className="jp-stackmagic-quiet"> (given)</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** The selected step: its facts, error, metrics, inputs, and outputs with their previews. */
export function StepDetails(props: {
  step: IStepDetail;
  preview: (output: string) => PreviewState | undefined;
  openNotebook: () => void;
}): JSX.Element {
  const { step } = props;
  return (
    <section
      className="jp-stackmagic-runview-section jp-stackmagic-runview-step"
      aria-label={`Step ${step.name}`}
      data-step={step.name}
    >
      <h2>
        Step {step.name}{' '}
        <span className={`jp-stackmagic-status jp-stackmagic-status-${step.status}`}>
          {step.status}
        </span>
      </h2>
      <dl className="jp-stackmagic-runview-facts">
        <dt>took</dt>
        <dd>{step.seconds === null ? '-' : took(step.seconds)}</dd>
        {step.reason && (
          <>
            <dt>{step.status === 'skipped' ? 'skipped' : 'why it ran'}</dt>
            <dd>{step.reason}</dd>
          </>
        )}
        {step.cached_from && (
          <>
            <dt>cached from</dt>
            <dd>{step.cached_from}</dd>
          </>
        )}
        {step.job_id && (
          <>
            <dt>job</dt>
            <dd>
              {step.job_url ? (
                <a
                  className="jp-stackmagic-runview-job"
                  href={step.job_url}
                  target="_blank"
                  rel="noopener noreferrer"
                >
                  {step.job_id}
                </a>
              ) : (
                step.job_id
              )}
            </dd>
          </>
        )}
        {step.attempts > 1 && (
          <>
            <dt>attempts</dt>
            <dd>{step.attempts}</dd>
          </>
        )}
      </dl>
      {step.notebook && (
        <button
          className="jp-mod-styled jp-stackmagic-runview-notebook"
          onClick={props.openNotebook}
        >
          Open the executed notebook
        </button>
      )}
      {step.error && <pre className="jp-stackmagic-runview-error">{step.error}</pre>}
      {step.metrics.length > 0 && (
        <>
          <h3>Metrics</h3>
          <table className="jp-stackmagic-runview-table" aria-label="Metrics">
            <tbody>
              {step.metrics.map((metric, index) => (
                <tr key={index}>
                  <th>{metric.name}</th>
                  <td>{metric.value}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <Artifacts title="Inputs" artifacts={step.inputs} />
      <Artifacts title="Outputs" artifacts={step.outputs} preview={props.preview} />
    </section>
  );
}

function Artifacts(props: {
  title: string;
  artifacts: Record<string, IArtifact>;
  preview?: (name: string) => PreviewState | undefined;
}): JSX.Element | null {
  const names = Object.keys(props.artifacts);
  if (names.length === 0) {
    return null;
  }
  return (
    <>
      <h3>{props.title}</h3>
      <ul className="jp-stackmagic-runview-artifacts" aria-label={props.title}>
        {names.map(name => {
          const artifact = props.artifacts[name];
          const preview = props.preview?.(name);
          return (
            <li key={name} data-output={name}>
              <div className="jp-stackmagic-runview-artifact" title={artifact.uri}>
                <code>{name}</code>{' '}
                <span className="jp-stackmagic-quiet">
                  {shortType(artifact.type_name)} · {bytes(artifact.size)} · {artifact.materializer}
                </span>
              </div>
              {preview && <Preview preview={preview} />}
            </li>
          );
        })}
      </ul>
    </>
  );
}

function Preview(props: { preview: PreviewState }): JSX.Element {
  const { preview } = props;
  if (preview === 'loading') {
    return <p className="jp-stackmagic-quiet jp-stackmagic-preview">Loading the preview…</p>;
  }
  if (preview instanceof Error) {
    return (
      <p className="jp-stackmagic-refusal jp-stackmagic-preview" role="alert">
        {preview.message}
      </p>
    );
  }
  switch (preview.kind) {
    case 'table':
      return (
        <div className="jp-stackmagic-preview jp-stackmagic-preview-table">
          <table>
            <thead>
              <tr>
                {(preview.columns ?? []).map((column, index) => (
                  <th key={index}>{column}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {(preview.rows ?? []).map((row, index) => (
                <tr key={index}>
                  {row.map((cell, column) => (
                    <td key={column}>{cell}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          <p className="jp-stackmagic-quiet">{tableSize(preview)}</p>
        </div>
      );
    case 'image':
      return (
        <img
          className="jp-stackmagic-preview jp-stackmagic-preview-image"
          alt={preview.name}
          src={`data:${preview.mime};base64,${preview.data}`}
        />
      );
    case 'text':
    case 'json':
      return (
        <pre className={`jp-stackmagic-preview jp-stackmagic-preview-${preview.kind}`}>
          {preview.text}
          {preview.truncated && <span className="jp-stackmagic-quiet">{'\n'}… (cut)</span>}
        </pre>
      );
    default:
      return <p className="jp-stackmagic-quiet jp-stackmagic-preview">{preview.reason}</p>;
  }
}

function tableSize(preview: IPreview): string {
  const rows = preview.rows?.length ?? 0;
  const total = preview.total_rows;
  const shownRows =
    total === null || total === undefined
      ? `first ${rows} rows`
      : `${rows} of ${total.toLocaleString()} rows`;
  const columns = preview.columns?.length ?? 0;
  const shownColumns =
    preview.total_columns && preview.total_columns > columns
      ? `, ${columns} of ${preview.total_columns} columns`
      : '';
  return shownRows + shownColumns;
}

function shortType(typeName: string): string {
  return typeName.split('.').pop() ?? typeName;
}

function bytes(size: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = size;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${size} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function when(moment: string): string {
  return new Date(moment).toLocaleString();
}

function seconds(start: string, end: string | null): number {
  return Math.max(0, ((end ? Date.parse(end) : Date.now()) - Date.parse(start)) / 1000);
}

function took(value: number): string {
  return value < 120 ? `${value.toFixed(1)} s` : `${(value / 60).toFixed(1)} min`;
}
