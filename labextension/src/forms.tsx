/**
 * Registration forms, generated from the flavor schemas the server sends.
 *
 * Secret options are password inputs: what is typed goes to the server once,
 * in the request body, and never comes back (the server answers with masks).
 * The server checks every value; its refusal is shown under the field it names.
 */
import { Notification } from '@jupyterlab/apputils';
import * as React from 'react';

import { COMPONENT_TYPES, ComponentType, IFlavor, IFlavorOption, STACK_FIELDS } from './api';
import { Field, fieldError, FieldErrors, label, typeLabel } from './fields';
import { StackmagicModel } from './model';

const REQUIRED_IN_STACK: ComponentType[] = ['metadata-store', 'artifact-store', 'orchestrator'];

interface IFormProps {
  model: StackmagicModel;
  onDone: () => void;
}

/** What went wrong that no one field explains, as the server put it. */
function Refusal(props: { message: string | null }): JSX.Element | null {
  return props.message ? (
    <div className="jp-stackmagic-refusal" role="alert">
      {props.message}
    </div>
  ) : null;
}

function Buttons(props: { busy: boolean; onCancel: () => void; submit: string }): JSX.Element {
  return (
    <div className="jp-stackmagic-form-buttons">
      <button type="button" className="jp-mod-styled jp-mod-reject" onClick={props.onCancel}>
        Cancel
      </button>
      <button type="submit" className="jp-mod-styled jp-mod-accept" disabled={props.busy}>
        {props.busy ? 'Working…' : props.submit}
      </button>
    </div>
  );
}

/** Submit through the model; a refusal stays on screen (by field if it names one). */
function useSubmit(onDone: () => void, fields: () => string[]) {
  const [busy, setBusy] = React.useState(false);
  const [refusal, setRefusal] = React.useState<FieldErrors>({});
  const form = React.useRef<HTMLFormElement>(null);
  React.useEffect(() => {
    // the field the server refused comes into view (a long form scrolls)
    form.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();
  }, [refusal]);
  const submit = (action: () => Promise<void>) => (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setRefusal({});
    Promise.resolve()
      .then(action)
      .then(onDone)
      .catch((error: Error) => {
        setRefusal(fieldError(error.message, fields()));
        setBusy(false);
      });
  };
  return { busy, refusal, submit, form };
}

function NameField(props: {
  value: string;
  error?: string;
  onChange: (value: string) => void;
}): JSX.Element {
  return (
    <Field
      name="name"
      label="Name"
      required
      error={props.error}
      help="Letters, digits, '-', '_' or '.', starting with a letter."
    >
      {described => (
        <input
          {...described}
          name="name"
          className="jp-mod-styled"
          required
          autoComplete="off"
          value={props.value}
          onChange={event => props.onChange(event.target.value)}
        />
      )}
    </Field>
  );
}

function OptionInput(props: {
  option: IFlavorOption;
  value: string | boolean;
  error?: string;
  onChange: (value: string | boolean) => void;
}): JSX.Element {
  const { option, value, onChange } = props;
  const help = option.secret
    ? `${option.help} Type it, or env:VARIABLE to read it from the server's environment when used.`
    : option.help;
  if (option.kind === 'boolean') {
    return (
      <Field name={option.name} label={label(option.name)} help={help} error={props.error} inline>
        {described => (
          <input
            {...described}
            name={option.name}
            type="checkbox"
            checked={value === true}
            onChange={event => onChange(event.target.checked)}
          />
        )}
      </Field>
    );
  }
  return (
    <Field
      name={option.name}
      label={label(option.name)}
      required={option.required}
      help={help}
      error={props.error}
    >
      {described =>
        option.kind === 'choice' && option.choices ? (
          <select
            {...described}
            name={option.name}
            className="jp-mod-styled"
            value={String(value)}
            onChange={event => onChange(event.target.value)}
          >
            {option.choices.map(choice => (
              <option key={choice} value={choice}>
                {choice}
              </option>
            ))}
          </select>
        ) : (
          <input
            {...described}
            name={option.name}
            className="jp-mod-styled"
            type={
              option.secret
                ? 'password'
                : option.kind === 'integer' || option.kind === 'number'
                  ? 'number'
                  : 'text'
            }
            autoComplete={option.secret ? 'new-password' : 'off'}
            placeholder={
              option.secret
                ? 'the secret, or env:VARIABLE'
                : option.kind === 'mapping'
                  ? 'KEY=VALUE,...'
                  : asText(option.default)
            }
            required={option.required}
            value={String(value)}
            onChange={event => onChange(event.target.value)}
          />
        )
      }
    </Field>
  );
}

/** A default from the flavor's schema as a field shows it: a list as its comma-separated text. */
function asText(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  if (typeof value === 'number' || typeof value === 'boolean') {
    return String(value);
  }
  if (Array.isArray(value)) {
    return value.map(asText).join(',');
  }
  return value === null || value === undefined ? '' : JSON.stringify(value);
}

function initialValue(option: IFlavorOption): string | boolean {
  if (option.kind === 'boolean') {
    return option.default === true;
  }
  if (option.kind === 'choice') {
    return asText(option.default ?? option.choices?.[0]);
  }
  return '';
}

/** The options a user set, typed as the schema says; untouched ones keep their defaults. */
function chosenOptions(
  flavor: IFlavor,
  values: Record<string, string | boolean>
): Record<string, unknown> {
  const chosen: Record<string, unknown> = {};
  for (const option of flavor.options) {
    const value = values[option.name];
    if (value === undefined || value === initialValue(option)) {
      continue;
    }
    if ((option.kind === 'integer' || option.kind === 'number') && value !== '') {
      chosen[option.name] = Number(value);
    } else if (value !== '') {
      chosen[option.name] = value;
    }
  }
  return chosen;
}

export function ComponentForm(props: IFormProps): JSX.Element {
  const flavors = props.model.flavors;
  const [type, setType] = React.useState<ComponentType>('artifact-store');
  const choices = flavors?.[type] ?? [];
  const [flavorName, setFlavorName] = React.useState<string>(choices[0]?.flavor ?? '');
  const [name, setName] = React.useState('');
  const [values, setValues] = React.useState<Record<string, string | boolean>>({});
  const flavor = choices.find(f => f.flavor === flavorName) ?? choices[0];
  const { busy, refusal, submit, form } = useSubmit(props.onDone, () => [
    'name',
    ...(flavor?.options.map(option => option.name) ?? [])
  ]);

  const chooseType = (next: ComponentType) => {
    setType(next);
    setFlavorName(flavors?.[next]?.[0]?.flavor ?? '');
    setValues({});
  };
  const chooseFlavor = (next: string) => {
    setFlavorName(next);
    setValues({});
  };
  const register = async () => {
    await props.model.registerComponent(type, name, flavor.flavor, chosenOptions(flavor, values));
    Notification.success(`Registered the ${typeLabel(type)} ${name} (${flavor.flavor}).`, {
      autoClose: 5000
    });
  };

  return (
    <form
      ref={form}
      className="jp-stackmagic-form"
      aria-label="Register a component"
      onSubmit={submit(register)}
    >
      <h3>Register a component</h3>
      <Field name="type" label="Type">
        {described => (
          <select
            {...described}
            name="type"
            className="jp-mod-styled"
            value={type}
            onChange={event => chooseType(event.target.value as ComponentType)}
          >
            {COMPONENT_TYPES.map(kind => (
              <option key={kind} value={kind}>
                {typeLabel(kind)}
              </option>
            ))}
          </select>
        )}
      </Field>
      <Field name="flavor" label="Flavor" help={flavor?.summary}>
        {described => (
          <select
            {...described}
            name="flavor"
            className="jp-mod-styled"
            value={flavor?.flavor ?? ''}
            onChange={event => chooseFlavor(event.target.value)}
          >
            {choices.map(f => (
              <option key={f.flavor} value={f.flavor} title={f.summary}>
                {f.flavor}
              </option>
            ))}
          </select>
        )}
      </Field>
      <NameField value={name} error={refusal.name} onChange={setName} />
      {flavor?.options.map(option => (
        <OptionInput
          key={`${flavor.flavor}-${option.name}`}
          option={option}
          value={values[option.name] ?? initialValue(option)}
          error={refusal[option.name]}
          onChange={value => setValues({ ...values, [option.name]: value })}
        />
      ))}
      <Refusal message={refusal[''] ?? null} />
      <Buttons busy={busy} onCancel={props.onDone} submit="Register" />
    </form>
  );
}

export function StackForm(props: IFormProps): JSX.Element {
  const { model } = props;
  const [name, setName] = React.useState('');
  const byType = (type: ComponentType) => model.components.filter(c => c.type === type);
  const [members, setMembers] = React.useState<Record<string, string>>(() => {
    const first: Record<string, string> = {};
    for (const type of REQUIRED_IN_STACK) {
      first[STACK_FIELDS[type]] = byType(type)[0]?.name ?? '';
    }
    return first;
  });
  const { busy, refusal, submit, form } = useSubmit(props.onDone, () => ['name']);
  const register = async () => {
    await model.registerStack(name, members);
    Notification.success(`Registered the stack ${name}.`, {
      autoClose: 10000,
      actions: [
        {
          label: 'Activate now',
          caption: `Make ${name} the active stack`,
          callback: () => {
            model
              .activate(name)
              .catch((error: Error) =>
                Notification.error(`${name} could not be activated: ${error.message}`)
              );
          }
        }
      ]
    });
  };

  return (
    <form
      ref={form}
      className="jp-stackmagic-form"
      aria-label="Register a stack"
      onSubmit={submit(register)}
    >
      <h3>Register a stack</h3>
      <NameField value={name} error={refusal.name} onChange={setName} />
      {COMPONENT_TYPES.map(type => (
        <Field
          key={type}
          name={type}
          label={label(typeLabel(type))}
          required={REQUIRED_IN_STACK.includes(type)}
        >
          {described => (
            <select
              {...described}
              name={type}
              className="jp-mod-styled"
              value={members[STACK_FIELDS[type]] ?? ''}
              onChange={event =>
                setMembers({ ...members, [STACK_FIELDS[type]]: event.target.value })
              }
            >
              {!REQUIRED_IN_STACK.includes(type) && <option value="">(none)</option>}
              {byType(type).map(component => (
                <option key={component.name} value={component.name}>
                  {component.name} ({component.flavor})
                </option>
              ))}
            </select>
          )}
        </Field>
      ))}
      <Refusal message={refusal[''] ?? null} />
      <Buttons busy={busy} onCancel={props.onDone} submit="Register" />
    </form>
  );
}
