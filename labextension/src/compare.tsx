/**
 * Runs side by side, in the main area: the parameters that differ, every
 * metric, and one metric drawn across the runs as bars.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { requestAPI } from './api';
import { formatValue, shortId, startTime } from './format';
import { stackmagicIcon } from './icon';

/** `GET compare?run=A&run=B`: `stackmagic pipeline compare A B --json`. */
export interface IComparison {
  runs: {
    id: string;
    pipeline: string;
    status: string;
    started_at: string;
    stack: string;
    /** The run in the stack's experiment tracker, where it is mirrored. */
    tracker_url: string | null;
  }[];
  /** Only the parameters whose values differ; null where a run has none. */
  parameters: Record<string, unknown[]>;
  same_parameters: Record<string, unknown>;
  metrics: Record<string, unknown[]>;
}

/** The tab of a comparison: comparing the same runs again shows it. */
export function comparisonId(runs: string[]): string {
  return `stackmagic-compare-${runs.join('-')}`;
}

/** The runs compared, kept so that a reloaded page opens the same comparison. */
export class ComparisonView extends ReactWidget {
  constructor(readonly runs: string[]) {
    super();
    this.addClass('jp-stackmagic-compare-view');
  }

  render(): JSX.Element {
    return <Comparison runs={this.runs} />;
  }
}

/** A main-area tab comparing the runs, in the order given. */
export function comparisonWidget(runs: string[]): MainAreaWidget<ComparisonView> {
  const content = new ComparisonView(runs);
  const widget = new MainAreaWidget({ content });
  widget.id = comparisonId(runs);
  widget.title.label = `Compare ${runs.map(shortId).join(', ')}`;
  widget.title.caption = `Runs ${runs.join(', ')} side by side`;
  widget.title.icon = stackmagicIcon;
  widget.title.closable = true;
  return widget;
}

function Comparison(props: { runs: string[] }): JSX.Element {
  const [comparison, setComparison] = React.useState<IComparison | null>(null);
  const [failure, setFailure] = React.useState<string | null>(null);
  React.useEffect(() => {
    const query = new URLSearchParams(props.runs.map(run => ['run', run]));
    requestAPI<IComparison>(`compare?${query.toString()}`)
      .then(setComparison)
      .catch((error: Error) => setFailure(error.message));
  }, [props.runs]);

  if (failure) {
    return (
      <div className="jp-stackmagic-refusal" role="alert">
        {failure}
      </div>
    );
  }
  if (!comparison) {
    return <p className="jp-stackmagic-quiet">Loading…</p>;
  }
  const differing = Object.entries(comparison.parameters);
  const metrics = Object.entries(comparison.metrics);
  const same = Object.entries(comparison.same_parameters);
  return (
    <div className="jp-stackmagic-comparison">
      <table className="jp-stackmagic-compare-table" aria-label="Runs compared">
        <thead>
          <tr>
            <th />
            {comparison.runs.map(run => (
              <th key={run.id} scope="col" data-run={run.id} title={run.id}>
                <div>
                  {run.pipeline} <code>{shortId(run.id)}</code>
                </div>
                <div className="jp-stackmagic-quiet">
                  <span className={`jp-stackmagic-status jp-stackmagic-status-${run.status}`}>
                    {run.status}
                  </span>{' '}
                  {startTime(run.started_at)} · {run.stack}
                  {run.tracker_url && (
                    <>
                      {' · '}
                      <a
                        className="jp-stackmagic-run-tracker"
                        href={run.tracker_url}
                        target="_blank"
                        rel="noopener noreferrer"
                      >
                        tracker
                      </a>
                    </>
                  )}
                </div>
              </th>
            ))}
          </tr>
        </thead>
        <Rows
          title="Parameters that differ"
          rows={differing}
          empty="The runs were given the same parameters."
          width={comparison.runs.length}
        />
        <Rows
          title="Metrics"
          rows={metrics}
          empty="No run logged a metric."
          width={comparison.runs.length}
        />
      </table>
      {same.length > 0 && (
        <p className="jp-stackmagic-quiet">
          Same in every run:{' '}
          {same.map(([name, value]) => `${name}=${formatValue(value)}`).join(', ')}
        </p>
      )}
      {metrics.length > 0 && <MetricChart comparison={comparison} />}
    </div>
  );
}

function Rows(props: {
  title: string;
  rows: [string, unknown[]][];
  empty: string;
  width: number;
}): JSX.Element {
  return (
    <tbody aria-label={props.title}>
      <tr className="jp-stackmagic-compare-group">
        <th scope="rowgroup" colSpan={props.width + 1}>
          {props.title}
        </th>
      </tr>
      {props.rows.length === 0 && (
        <tr>
          <td colSpan={props.width + 1} className="jp-stackmagic-quiet">
            {props.empty}
          </td>
        </tr>
      )}
      {props.rows.map(([name, values]) => (
        <tr key={name} data-name={name}>
          <th scope="row">{name}</th>
          {values.map((value, index) => (
            <td key={index}>{formatValue(value)}</td>
          ))}
        </tr>
      ))}
    </tbody>
  );
}

const BAR = { height: 24, gap: 8, label: 90, width: 360, value: 70 };

/** One metric across the runs as horizontal bars (SVG); a run without it has no bar. */
function MetricChart(props: { comparison: IComparison }): JSX.Element {
  const { comparison } = props;
  const names = Object.keys(comparison.metrics);
  const [metric, setMetric] = React.useState(names[0]);
  const values = (comparison.metrics[metric] ?? []).map(value =>
    typeof value === 'number' && Number.isFinite(value) ? value : null
  );
  const numbers = values.filter((value): value is number => value !== null);
  const low = Math.min(0, ...numbers);
  const span = Math.max(0, ...numbers) - low || 1;
  const x = (value: number) => BAR.label + ((value - low) / span) * BAR.width;
  const height = comparison.runs.length * (BAR.height + BAR.gap);
  return (
    <figure className="jp-stackmagic-chart">
      <figcaption>
        <label>
          Metric{' '}
          <select
            className="jp-mod-styled"
            aria-label="Metric to plot"
            value={metric}
            onChange={event => setMetric(event.target.value)}
          >
            {names.map(name => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
      </figcaption>
      <svg
        width={BAR.label + BAR.width + BAR.value}
        height={height}
        role="img"
        aria-label={`${metric} across the runs`}
      >
        {comparison.runs.map((run, index) => {
          const value = values[index];
          const y = index * (BAR.height + BAR.gap);
          return (
            <g key={run.id} data-run={run.id} data-value={value ?? ''}>
              <text x={BAR.label - 6} y={y + BAR.height / 2} className="jp-stackmagic-chart-label">
                {shortId(run.id)}
              </text>
              {value !== null && (
                <rect
                  x={Math.min(x(0), x(value))}
                  y={y}
                  width={Math.max(1, Math.abs(x(value) - x(0)))}
                  height={BAR.height}
                  className="jp-stackmagic-chart-bar"
                />
              )}
              <text
                x={(value === null ? x(0) : Math.max(x(0), x(value))) + 6}
                y={y + BAR.height / 2}
                className="jp-stackmagic-chart-value"
              >
                {value === null ? 'not logged' : formatValue(value)}
              </text>
            </g>
          );
        })}
      </svg>
    </figure>
  );
}
