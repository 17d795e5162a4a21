/**
 * The "Stacks" sidebar: every stack with its components, the active one
 * highlighted and a click away, registration forms, and the recent runs.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import {
  addIcon,
  deleteIcon,
  ReactWidget,
  refreshIcon,
  ToolbarButtonComponent,
  UseSignal
} from '@jupyterlab/ui-components';
import * as React from 'react';

import { COMPONENT_TYPES, IComponent, IStack } from './api';
import { ComponentForm, StackForm } from './forms';
import { StackmagicModel } from './model';
import { stackmagicIcon } from './icon';
import { Runs } from './runlist';
import { Attempt, Section } from './section';

export interface IPanelActions {
  /** Open the executed notebook of a step of a run. */
  openStepNotebook: (run: string, step: string) => void;
  /** Open the run's own view in the main area. */
  openRun: (run: string) => void;
  /** Open the comparison of these runs in the main area. */
  compareRuns: (runs: string[]) => void;
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
  const attempt: Attempt = action => () => {
    setFailure(null);
    Promise.resolve()
      .then(action)
      .catch((error: Error) => setFailure(error.message));
  };
  const problem = failure ?? model.error;

  return (
    <div className="jp-stackmagic-sidebar">
      <div className="jp-SidePanel-header jp-stackmagic-header">
        <h2>Stacks and runs</h2>
      </div>
      <div
        className="jp-SidePanel-toolbar jp-Toolbar jp-stackmagic-toolbar"
        role="toolbar"
        aria-label="Stacks and runs"
      >
        {(['stack', 'component'] as const).map(kind => (
          <ToolbarButtonComponent
            key={kind}
            className="jp-stackmagic-register"
            icon={addIcon}
            label={kind === 'stack' ? 'Stack' : 'Component'}
            tooltip={`Register a ${kind}`}
            pressed={form === kind}
            aria-expanded={form === kind}
            onClick={() => setForm(form === kind ? null : kind)}
          />
        ))}
        <ToolbarButtonComponent
          icon={refreshIcon}
          tooltip="Refresh stacks and runs"
          onClick={attempt(() => model.reload())}
        />
      </div>
      <div className="jp-stackmagic-content">
        {problem && (
          <div className="jp-stackmagic-refusal" role="alert">
            {problem}
          </div>
        )}
        {form === 'component' && model.flavors && (
          <ComponentForm model={model} onDone={() => setForm(null)} />
        )}
        {form === 'stack' && <StackForm model={model} onDone={() => setForm(null)} />}
        <Section id="stacks" title={`Stacks (${model.stacks.length})`}>
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
                    await confirmDelete(
                      `Delete the stack ${stack.name}?`,
                      'Its components stay registered.'
                    )
                  ) {
                    await model.deleteStack(stack.name);
                  }
                })}
              />
            ))}
          </ul>
        </Section>
        <Section id="components" title={`Components (${model.components.length})`} closed>
          <Components model={model} attempt={attempt} />
        </Section>
        <Runs model={model} actions={props.actions} attempt={attempt} />
      </div>
    </div>
  );
}

export async function confirmDelete(title: string, body: string): Promise<boolean> {
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
          <DeleteButton what={`the stack ${stack.name}`} onClick={props.onDelete} />
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

function DeleteButton(props: { what: string; onClick: () => void }): JSX.Element {
  return (
    <button
      className="jp-stackmagic-icon-button jp-stackmagic-delete"
      title={`Delete ${props.what}`}
      aria-label={`Delete ${props.what}`}
      onClick={event => {
        event.stopPropagation();
        props.onClick();
      }}
    >
      <deleteIcon.react tag="span" />
    </button>
  );
}

function Components(props: { model: StackmagicModel; attempt: Attempt }): JSX.Element {
  const { model } = props;
  return (
    <ul className="jp-stackmagic-components" aria-label="Components">
      {model.components.map(component => (
        <li key={`${component.type}/${component.name}`} data-component={component.name}>
          <span className="jp-stackmagic-quiet">{component.type}</span> {component.name}{' '}
          <span className="jp-stackmagic-quiet">({component.flavor})</span>
          {component.name !== 'default' && (
            <DeleteButton
              what={`the ${component.type} ${component.name}`}
              onClick={props.attempt(async () => {
                if (
                  await confirmDelete(
                    `Delete the ${component.type} ${component.name}?`,
                    'Nothing it stored is deleted.'
                  )
                ) {
                  await model.deleteComponent(component.type, component.name);
                }
              })}
            />
          )}
        </li>
      ))}
    </ul>
  );
}
