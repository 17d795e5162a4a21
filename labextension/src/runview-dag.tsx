/**
 * A run's DAG drawn as SVG: steps in columns by depth, left to right, each
 * coloured by its status and clickable to select.
 */
import * as React from 'react';

import { IStepDetail } from './api';

const NODE_WIDTH = 156;
const NODE_HEIGHT = 42;
const COLUMN_GAP = 56;
const ROW_GAP = 14;
const MARGIN = 10;
const NAME_CHARS = 20;

interface IPlaced {
  step: IStepDetail;
  x: number;
  y: number;
}

/** Each step's place: its column is the longest path to it, its row its order in the column. */
export function layout(
  steps: IStepDetail[],
  edges: [string, string][]
): { placed: Map<string, IPlaced>; width: number; height: number } {
  const parents = new Map<string, string[]>(steps.map(step => [step.name, []]));
  for (const [upstream, step] of edges) {
    parents.get(step)?.push(upstream);
  }
  const depth = new Map<string, number>();
  const depthOf = (name: string, seen: Set<string>): number => {
    const known = depth.get(name);
    if (known !== undefined) {
      return known;
    }
    seen.add(name);
    const above = (parents.get(name) ?? []).filter(parent => !seen.has(parent));
    const found = above.length ? 1 + Math.max(...above.map(parent => depthOf(parent, seen))) : 0;
    depth.set(name, found);
    return found;
  };
  const columns: IStepDetail[][] = [];
  for (const step of steps) {
    (columns[depthOf(step.name, new Set())] ??= []).push(step);
  }
  const tallest = Math.max(1, ...columns.map(column => column.length));
  const height = 2 * MARGIN + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP;
  const placed = new Map<string, IPlaced>();
  columns.forEach((column, index) => {
    const columnHeight = column.length * NODE_HEIGHT + (column.length - 1) * ROW_GAP;
    const top = (height - columnHeight) / 2;
    column.forEach((step, row) =>
      placed.set(step.name, {
        step,
        x: MARGIN + index * (NODE_WIDTH + COLUMN_GAP),
        y: top + row * (NODE_HEIGHT + ROW_GAP)
      })
    );
  });
  const width = 2 * MARGIN + columns.length * NODE_WIDTH + (columns.length - 1) * COLUMN_GAP;
  return { placed, width, height };
}

export function RunDag(props: {
  steps: IStepDetail[];
  edges: [string, string][];
  selected: string | null;
  onSelect: (step: string) => void;
}): JSX.Element {
  const { placed, width, height } = layout(props.steps, props.edges);
  return (
    <svg
      className="jp-stackmagic-dag"
      width={width}
      height={height}
      viewBox={`0 0 ${width} ${height}`}
      role="group"
      aria-label="Steps of the run"
    >
      <defs>
        <marker
          id="jp-stackmagic-arrow"
          viewBox="0 0 10 10"
          refX="10"
          refY="5"
          markerWidth="7"
          markerHeight="7"
          orient="auto-start-reverse"
        >
          <path d="M 0 0 L 10 5 L 0 10 z" className="jp-stackmagic-dag-arrow" />
        </marker>
      </defs>
      {props.edges.map(([from, to]) => {
        const start = placed.get(from);
        const end = placed.get(to);
        if (!start || !end) {
          return null;
        }
        const [x1, y1] = [start.x + NODE_WIDTH, start.y + NODE_HEIGHT / 2];
        const [x2, y2] = [end.x, end.y + NODE_HEIGHT / 2];
        const bend = (x2 - x1) / 2;
        return (
          <path
            key={`${from}->${to}`}
            className="jp-stackmagic-dag-edge"
            data-edge={`${from}->${to}`}
            d={`M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`}
            markerEnd="url(#jp-stackmagic-arrow)"
          />
        );
      })}
      {[...placed.values()].map(({ step, x, y }) => (
        <StepNode
          key={step.name}
          step={step}
          x={x}
          y={y}
          selected={props.selected === step.name}
          onSelect={() => props.onSelect(step.name)}
        />
      ))}
    </svg>
  );
}

function StepNode(props: {
  step: IStepDetail;
  x: number;
  y: number;
  selected: boolean;
  onSelect: () => void;
}): JSX.Element {
  const { step } = props;
  const name = step.name.length > NAME_CHARS ? `${step.name.slice(0, NAME_CHARS - 1)}…` : step.name;
  const detail =
    step.seconds !== null ? `${step.status} · ${step.seconds.toFixed(1)} s` : step.status;
  return (
    <g
      className={`jp-stackmagic-node jp-stackmagic-node-${step.status}${props.selected ? ' jp-mod-selected' : ''}`}
      data-step={step.name}
      data-status={step.status}
      transform={`translate(${props.x} ${props.y})`}
      role="button"
      tabIndex={0}
      aria-pressed={props.selected}
      aria-label={`Step ${step.name}, ${step.status}`}
      onClick={props.onSelect}
      onKeyDown={event => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          props.onSelect();
        }
      }}
    >
      <title>{step.error ?? step.reason ?? `${step.name}: ${step.status}`}</title>
      <rect width={NODE_WIDTH} height={NODE_HEIGHT} rx={6} />
      <text x={10} y={17} className="jp-stackmagic-node-name">
        {name}
      </text>
      <text x={10} y={33} className="jp-stackmagic-node-detail">
        {detail}
      </text>
    </g>
  );
}
