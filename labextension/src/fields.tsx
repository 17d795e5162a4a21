/**
 * A form's fields as people read them: "Path", not "--path", with help under
 * the input, required ones marked, and the server's refusal of a value shown
 * under the field it is about, in the form's words.
 */
import * as React from 'react';

import { ComponentType } from './api';

/** Words that read better in capitals: "Endpoint URL", "Access key ID". */
const ACRONYMS = new Set([
  'api',
  'ca',
  'cpu',
  'gpu',
  'id',
  'kfp',
  'ssl',
  'tls',
  'uri',
  'url',
  'vm'
]);

/** "secret-access-key" → "Secret access key"; "endpoint_url" → "Endpoint URL". */
export function label(name: string): string {
  const words = name.split(/[-_\s]+/).filter(Boolean);
  return words
    .map((word, index) =>
      ACRONYMS.has(word.toLowerCase())
        ? word.toUpperCase()
        : index === 0
          ? word[0].toUpperCase() + word.slice(1)
          : word
    )
    .join(' ');
}

/** "artifact-store" → "artifact store", as a sentence says it. */
export function typeLabel(type: ComponentType): string {
  return type.replace('-', ' ');
}

/** Refusals by field name; '' for one no field explains. */
export type FieldErrors = Record<string, string>;

/**
 * The field a refusal of the server is about, and the refusal worded for the form.
 *
 * The server speaks the command line ("--path: expects a URL like s3://bucket/dir,
 * not 'x'", "the s3 flavor needs --path"); the form names fields by their labels.
 */
export function fieldError(message: string, fields: string[]): FieldErrors {
  const named = /--([A-Za-z][\w-]*)/.exec(message)?.[1];
  const field = fields.find(name => name === named || name.replace(/_/g, '-') === named);
  if (field) {
    if (new RegExp(`needs --${named}\\b`).test(message)) {
      return { [field]: `${label(field)} is required.` };
    }
    const said = message
      .replace(new RegExp(`^--${named}:?\\s*`), '')
      .replace(/--([A-Za-z][\w-]*)/g, (_, other: string) => `"${label(other)}"`);
    return { [field]: sentence(said) };
  }
  if (fields.includes('name') && /\bname\b|already exists/.test(message)) {
    return { name: sentence(message) };
  }
  return { '': message };
}

/** Capitalised and ending in a full stop (the server's lines are sentence fragments). */
function sentence(text: string): string {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?)]$/.test(capital) ? capital : `${capital}.`;
}

/** What a field's input carries so that its label, help and error are read with it. */
export interface IDescribed {
  id: string;
  'aria-invalid'?: boolean;
  'aria-describedby'?: string;
}

/** A labelled field: the label above the input (beside a checkbox), help and refusal below. */
export function Field(props: {
  name: string;
  label: string;
  required?: boolean;
  help?: string;
  error?: string;
  inline?: boolean;
  children: (described: IDescribed) => JSX.Element;
}): JSX.Element {
  const id = React.useId();
  const described: IDescribed = {
    id,
    'aria-invalid': props.error ? true : undefined,
    'aria-describedby':
      [props.error && `${id}-error`, props.help && `${id}-help`].filter(Boolean).join(' ') ||
      undefined
  };
  const caption = (
    <label htmlFor={id}>
      {props.label}
      {props.required && (
        <span className="jp-stackmagic-required" title="required" aria-hidden="true">
          *
        </span>
      )}
    </label>
  );
  const classes = ['jp-stackmagic-field'];
  if (props.inline) {
    classes.push('jp-mod-inline');
  }
  if (props.error) {
    classes.push('jp-mod-error');
  }
  return (
    <div className={classes.join(' ')} data-field={props.name}>
      {props.inline ? (
        <div className="jp-stackmagic-field-inline">
          {props.children(described)}
          {caption}
        </div>
      ) : (
        <>
          {caption}
          {props.children(described)}
        </>
      )}
      {props.error && (
        <div className="jp-stackmagic-field-error" id={`${id}-error`}>
          {props.error}
        </div>
      )}
      {props.help && (
        <div className="jp-stackmagic-field-help" id={`${id}-help`}>
          {props.help}
        </div>
      )}
    </div>
  );
}
