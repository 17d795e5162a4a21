/**
 * "Run as pipeline" asks first: the parameters (the notebook's `parameters`
 * cell gives the defaults), no-cache, and which steps to run (only one, or
 * from one on): `stackmagic pipeline run -p ... --no-cache --only S | --from S`.
 * A run view's "Run again" asks the same, filled in as that run was given.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { requestAPI } from './api';
import { Field, label } from './fields';

/** `GET pipeline?notebook=PATH`: `stackmagic pipeline show PATH --json`. */
export interface IPipeline {
  name: string;
  parameters: Record<string, unknown>;
  steps: { name: string }[];
}

/** The body of `POST runs`, less the notebook. */
export interface IRunOptions {
  parameters: Record<string, unknown>;
  no_cache: boolean;
  only?: string[];
  from_step?: string;
}

/**
 * Ask for the options of a run of the notebook (as the server names it) and start it;
 * the new run's id, or null when the dialog was cancelled. A run that cannot start throws
 * the server's reason, whole.
 *
 * `initial`, when given, fills the dialog in (a run's own options, to run it again);
 * `stack` runs it there rather than on the active stack.
 */
export async function startRun(
  notebook: string,
  initial?: Partial<IRunOptions>,
  stack?: string
): Promise<string | null> {
  const pipeline = await requestAPI<IPipeline>(`pipeline?${new URLSearchParams({ notebook })}`);
  const options = await askRunOptions(pipeline, initial);
  if (!options) {
    return null;
  }
  const body = { notebook, ...options, ...(stack ? { stack } : {}) };
  return (await requestAPI<{ id: string }>('runs', 'POST', body)).id;
}

/** The options the user chose; null when the dialog was cancelled. */
async function askRunOptions(
  pipeline: IPipeline,
  initial: Partial<IRunOptions> = {}
): Promise<IRunOptions | null> {
  const body = new RunOptionsBody(pipeline, initial);
  const answer = await showDialog({
    title: `Run ${pipeline.name} as a pipeline`,
    body,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })],
    focusNodeSelector: 'input'
  });
  return answer.button.accept ? answer.value : null;
}

interface IChoices {
  /** Each parameter as typed. */
  texts: Record<string, string | boolean>;
  noCache: boolean;
  /** '', 'only:STEP' or 'from:STEP'. */
  steps: string;
}

class RunOptionsBody extends ReactWidget implements Dialog.IBodyWidget<IRunOptions> {
  constructor(
    private readonly _pipeline: IPipeline,
    initial: Partial<IRunOptions>
  ) {
    super();
    this.addClass('jp-stackmagic-run-dialog');
    const given = initial.parameters ?? {};
    const texts: Record<string, string | boolean> = {};
    for (const [name, fallback] of Object.entries(_pipeline.parameters)) {
      const value = name in given ? given[name] : fallback;
      texts[name] =
        typeof fallback === 'boolean' && typeof value === 'boolean' ? value : asText(value);
    }
    this._choices = {
      texts,
      noCache: initial.no_cache ?? false,
      steps: stepChoice(_pipeline, initial)
    };
  }

  getValue(): IRunOptions {
    const { texts, noCache, steps } = this._choices;
    const parameters: Record<string, unknown> = {};
    for (const [name, fallback] of Object.entries(this._pipeline.parameters)) {
      const value = typed(texts[name], fallback);
      if (JSON.stringify(value) !== JSON.stringify(fallback)) {
        parameters[name] = value; // only the overrides: the record tells them apart
      }
    }
    const options: IRunOptions = { parameters, no_cache: noCache };
    const [how, step] = steps.split(':');
    if (how === 'only') {
      options.only = [step];
    } else if (how === 'from') {
      options.from_step = step;
    }
    return options;
  }

  render(): JSX.Element {
    return (
      <RunOptionsForm
        pipeline={this._pipeline}
        initial={this._choices}
        onChange={choices => (this._choices = choices)}
      />
    );
  }

  private _choices: IChoices;
}

function RunOptionsForm(props: {
  pipeline: IPipeline;
  initial: IChoices;
  onChange: (choices: IChoices) => void;
}): JSX.Element {
  const [choices, setChoices] = React.useState(props.initial);
  const change = (next: Partial<IChoices>) => {
    const updated = { ...choices, ...next };
    setChoices(updated);
    props.onChange(updated);
  };
  const parameters = Object.entries(props.pipeline.parameters);
  const steps = props.pipeline.steps.map(step => step.name);
  return (
    <form
      className="jp-stackmagic-form"
      aria-label="Run options"
      onSubmit={event => event.preventDefault()}
    >
      <fieldset>
        <legend>Parameters</legend>
        {parameters.length === 0 && (
          <p className="jp-stackmagic-quiet">
            The notebook has no cell tagged <code>parameters</code>.
          </p>
        )}
        {parameters.map(([name, fallback]) => {
          const text = choices.texts[name];
          const setText = (value: string | boolean) =>
            change({ texts: { ...choices.texts, [name]: value } });
          return typeof fallback === 'boolean' ? (
            <CheckboxField
              key={name}
              name={name}
              label={name}
              checked={text === true}
              onChange={setText}
            />
          ) : (
            <Field key={name} name={name} label={name} help={`default: ${asText(fallback)}`}>
              {described => (
                <input
                  {...described}
                  name={name}
                  className="jp-mod-styled"
                  autoComplete="off"
                  value={String(text)}
                  onChange={event => setText(event.target.value)}
                />
              )}
            </Field>
          );
        })}
      </fieldset>
      <fieldset>
        <legend>Steps</legend>
        <CheckboxField
          name="no-cache"
          label={label('no cache')}
          help="Run every step, even those whose inputs and code are unchanged."
          checked={choices.noCache}
          onChange={noCache => change({ noCache })}
        />
        <Field
          name="steps"
          label="Steps to run"
          help="The steps left out give their outputs from the cache (their last run)."
        >
          {described => (
            <select
              {...described}
              name="steps"
              className="jp-mod-styled"
              value={choices.steps}
              onChange={event => change({ steps: event.target.value })}
            >
              <option value="">Every step</option>
              {steps.map(step => (
                <option key={`only-${step}`} value={`only:${step}`}>
                  Only {step}
                </option>
              ))}
              {steps.slice(1).map(step => (
                <option key={`from-${step}`} value={`from:${step}`}>
                  From {step} on
                </option>
              ))}
            </select>
          )}
        </Field>
      </fieldset>
    </form>
  );
}

/** A checkbox with its label beside it: a yes/no parameter, or "No cache". */
function CheckboxField(props: {
  name: string;
  label: string;
  help?: string;
  checked: boolean;
  onChange: (checked: boolean) => void;
}): JSX.Element {
  return (
    <Field name={props.name} label={props.label} help={props.help} inline>
      {described => (
        <input
          {...described}
          name={props.name}
          type="checkbox"
          checked={props.checked}
          onChange={event => props.onChange(event.target.checked)}
        />
      )}
    </Field>
  );
}

/** The "Steps to run" choice of options: '' (every step) unless it names a step still there. */
function stepChoice(pipeline: IPipeline, options: Partial<IRunOptions>): string {
  const steps = pipeline.steps.map(step => step.name);
  const [only] = options.only ?? [];
  if (only && steps.includes(only)) {
    return `only:${only}`;
  }
  const from = options.from_step;
  return from && steps.slice(1).includes(from) ? `from:${from}` : '';
}

/** A default as its field shows it: text as is, anything else as JSON (`0.1`, `[1, 2]`). */
function asText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** What was typed, as the type of the default: JSON where it is no text. */
function typed(text: string | boolean | undefined, fallback: unknown): unknown {
  if (typeof text === 'boolean' || text === undefined || typeof fallback === 'string') {
    return text ?? fallback;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text; // the run refuses it, or takes it as text, as `-p NAME VALUE` would
  }
}
