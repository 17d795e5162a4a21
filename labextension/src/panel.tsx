/**
 * The "Stacks" sidebar: every stack with its components, the active one
 * highlighted and a click away, registration forms, and the recent runs.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import {
  addIcon,
  caretDownIcon,
  caretRightIcon,
  deleteIcon,
  ReactWidget,
  UseSignal
} from '@jupyterlab/ui-components';
import * as React from 'react';

import { COMPONENT_TYPES, IComponent, IRun, IStack } from './api';
import { ComponentForm, StackForm } from './forms';
import { StackmagicModel } from './model';
import { stackmagicIcon } from './icon';

export interface IPanelActions {
  /** Open the executed notebook of a step of a run. */
  openStepNotebook: (run: string, step: string) => void;
}

export class StacksPanel extends ReactWidget {
  constructor(
    readonly model: StackmagicModel,
    private readonly _actions: IPanelActions
  ) {
    super();
    this.id = 'stackmagic-sidebar';
    this.addClass('jp-stackmagic-panel');
    this.title.icon = stackmagicIcon;
    this.title.caption = 'Stacks';
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => <Sidebar model={this.model} actions={this._actions} />}
      </UseSignal>
    );
  }
}

type OpenForm = 'component' | 'stack' | null;

function Sidebar(props: { model: StackmagicModel; actions: IPanelActions }): JSX.Element {
  const { model } = props;
  const [form, setForm] = React.useState<OpenForm>(null);
  const [failure, setFailure] = React.useState<string | null>(null);
  const attempt = (action: () => Promise<void>) => () => {
    setFailure(null);
    Promise.resolve()
      .then(action)
      .catch((error: Error) => setFailure(error.message));
  };
  const problem = failure ?? model.error;

  return (
    <div className="jp-stackmagic-sidebar">
      <header className="jp-stackmagic-header">
        <h2>Stacks</h2>
        {(['stack', 'component'] as const).map(kind => (
          <button
            key={kind}
            className="jp-stackmagic-icon-button"
            title={`Register a ${kind}`}
            aria-label={`Register a ${kind}`}
            aria-expanded={form === kind}
            onClick={() => setForm(form === kind ? null : kind)}
          >
            <addIcon.react tag="span" /> {kind}
          </button>
        ))}
      </header>
      {problem && (
        <div className="jp-stackmagic-refusal" role="alert">
          {problem}
        </div>
      )}
      {form === 'component' && model.flavors && (
        <ComponentForm model={model} onDone={() => setForm(null)} />
      )}
      {form === 'stack' && <StackForm model={model} onDone={() => setForm(null)} />}
      {!model.loaded && !model.error && <p className="jp-stackmagic-quiet">Loading…</p>}
      <ul className="jp-stackmagic-stacks" aria-label="Stacks">
        {model.stacks.map(stack => (
          <StackItem
            key={stack.name}
            stack={stack}
            components={model.components}
            onActivate={attempt(() => model.activate(stack.name))}
            onDelete={attempt(async () => {
              if (
                await confirm(`Delete the stack ${stack.name}?`, 'Its components stay registered.')
              ) {
                await model.deleteStack(stack.name);
              }
            })}
          />
        ))}
      </ul>
      <Components model={model} attempt={attempt} />
      <Runs runs={model.runs} problem={model.runsError} actions={props.actions} />
    </div>
  );
}

async function confirm(title: string, body: string): Promise<boolean> {
  const answer = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
  });
  return answer.button.accept;
}

function StackItem(props: {
  stack: IStack;
  components: IComponent[];
  onActivate: () => void;
  onDelete: () => void;
}): JSX.Element {
  const { stack } = props;
  const flavorOf = (type: string, name: string) =>
    props.components.find(c => c.type === type && c.name === name)?.flavor;
  return (
    <li
      className={`jp-stackmagic-stack${stack.active ? ' jp-mod-active' : ''}`}
      data-stack={stack.name}
      aria-current={stack.active ? 'true' : undefined}
      title={stack.active ? 'The active stack' : `Click to make ${stack.name} the active stack`}
      role={stack.active ? undefined : 'button'}
      tabIndex={stack.active ? undefined : 0}
      onClick={stack.active ? undefined : props.onActivate}
      onKeyDown={event => {
        if (!stack.active && (event.key === 'Enter' || event.key === ' ')) {
          event.preventDefault();
          props.onActivate();
        }
      }}
    >
      <div className="jp-stackmagic-stack-title">
        <span className="jp-stackmagic-stack-name">{stack.name}</span>
        {stack.active && <span className="jp-stackmagic-badge">active</span>}
        {!stack.active && stack.name !== 'default' && (
          <button
            className="jp-stackmagic-icon-button jp-stackmagic-delete"
            title={`Delete the stack ${stack.name}`}
            aria-label={`Delete the stack ${stack.name}`}
            onClick={event => {
              event.stopPropagation();
              props.onDelete();
            }}
          >
            <deleteIcon.react tag="span" />
          </button>
        )}
      </div>
      <dl className="jp-stackmagic-members">
        {COMPONENT_TYPES.filter(type => stack.components[type]).map(type => {
          const name = stack.components[type] as string;
          const flavor = flavorOf(type, name);
          return (
            <React.Fragment key={type}>
              <dt>{type}</dt>
              <dd>
                {name}
                {flavor && flavor !== name ? ` (${flavor})` : ''}
              </dd>
            </React.Fragment>
          );
        })}
      </dl>
    </li>
  );
}

function Components(props: {
  model: StackmagicModel;
  attempt: (action: () => Promise<void>) => () => void;
}): JSX.Element {
  const [open, setOpen] = React.useState(false);
  const { model } = props;
  const Caret = open ? caretDownIcon : caretRightIcon;
  return (
    <section className="jp-stackmagic-section">
      <h2 className="jp-stackmagic-toggle" onClick={() => setOpen(!open)}>
        <Caret.react tag="span" /> Components ({model.components.length})
      </h2>
      {open && (
        <ul className="jp-stackmagic-components" aria-label="Components">
          {model.components.map(component => (
            <li key={`${component.type}/${component.name}`} data-component={component.name}>
              <span className="jp-stackmagic-quiet">{component.type}</span> {component.name}{' '}
              <span className="jp-stackmagic-quiet">({component.flavor})</span>
              {component.name !== 'default' && (
                <button
                  className="jp-stackmagic-icon-button jp-stackmagic-delete"
                  title={`Delete the ${component.type} ${component.name}`}
                  aria-label={`Delete the ${component.type} ${component.name}`}
                  onClick={props.attempt(async () => {
                    if (
                      await confirm(
                        `Delete the ${component.type} ${component.name}?`,
                        'Nothing it stored is deleted.'
                      )
                    ) {
                      await model.deleteComponent(component.type, component.name);
                    }
                  })}
                >
                  <deleteIcon.react tag="span" />
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** "1.5 s", "2.3 min": how long a run took, or has taken so far. */
export function duration(run: IRun, now: number = Date.now()): string {
  const end = run.ended_at ? Date.parse(run.ended_at) : now;
  const seconds = Math.max(0, (end - Date.parse(run.started_at)) / 1000);
  return seconds < 120 ? `${seconds.toFixed(1)} s` : `${(seconds / 60).toFixed(1)} min`;
}

function Runs(props: {
  runs: IRun[];
  problem: string | null;
  actions: IPanelActions;
}): JSX.Element {
  const [expanded, setExpanded] = React.useState<string | null>(null);
  return (
    <section className="jp-stackmagic-section">
      <h2>Runs</h2>
      {props.problem && (
        <div className="jp-stackmagic-refusal" role="alert" aria-label="Runs unavailable">
          {props.problem}
        </div>
      )}
      {!props.problem && props.runs.length === 0 && (
        <p className="jp-stackmagic-quiet">
          No runs yet: mark cells with <code>%%step NAME</code> and press "Run as pipeline".
        </p>
      )}
      <ul className="jp-stackmagic-runs" aria-label="Runs">
        {props.runs.map(run => {
          const open = expanded === run.id;
          const Caret = open ? caretDownIcon : caretRightIcon;
          const done = run.steps.filter(s => ['completed', 'cached'].includes(s.status)).length;
          return (
            <li
              key={run.id}
              className="jp-stackmagic-run"
              data-run={run.id}
              data-status={run.status}
            >
              <div
                className="jp-stackmagic-run-title"
                title={run.error ?? `${run.notebook}, run ${run.id}`}
                onClick={() => setExpanded(open ? null : run.id)}
              >
                <Caret.react tag="span" />
                <span className={`jp-stackmagic-status jp-stackmagic-status-${run.status}`}>
                  {run.status}
                </span>
                <span className="jp-stackmagic-run-pipeline">{run.pipeline}</span>
                <span className="jp-stackmagic-quiet">
                  {duration(run)} · {run.stack} · {done}/{run.steps.length} steps
                </span>
              </div>
              {open && (
                <ol className="jp-stackmagic-steps">
                  {run.error && <li className="jp-stackmagic-refusal">{run.error}</li>}
                  {run.steps.map(step => (
                    <li key={step.name} data-step={step.name} title={step.error ?? ''}>
                      <span className={`jp-stackmagic-status jp-stackmagic-status-${step.status}`}>
                        {step.status}
                      </span>{' '}
                      {step.notebook ? (
                        <a
                          href="#"
                          title="Open the executed notebook"
                          onClick={event => {
                            event.preventDefault();
                            props.actions.openStepNotebook(run.id, step.name);
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
                    </li>
                  ))}
                </ol>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}
