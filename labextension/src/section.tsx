/**
 * What the sidebar's parts share: a section that folds, and how an action of
 * the user is tried.
 */
import { caretDownIcon, caretRightIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

/** Carry out an action of the user; a refusal shows until the next action. */
export type Attempt = (action: () => Promise<void>) => () => void;

/**
 * A part of the sidebar that folds under its heading; it stays folded or open
 * across reloads (kept in the browser's local storage).
 */
export function Section(props: {
  id: string;
  title: string;
  closed?: boolean;
  actions?: JSX.Element;
  children: React.ReactNode;
}): JSX.Element {
  const key = `stackmagic:sidebar-section:${props.id}`;
  const [open, setOpen] = React.useState(() => {
    const kept = window.localStorage.getItem(key);
    return kept === null ? !props.closed : kept === 'open';
  });
  const toggle = () => {
    window.localStorage.setItem(key, open ? 'closed' : 'open');
    setOpen(!open);
  };
  const Caret = open ? caretDownIcon : caretRightIcon;
  return (
    <section className="jp-stackmagic-section" data-section={props.id}>
      <div className="jp-stackmagic-section-header">
        <button
          className="jp-stackmagic-toggle"
          aria-expanded={open}
          aria-controls={`jp-stackmagic-section-${props.id}`}
          onClick={toggle}
        >
          <Caret.react tag="span" className="jp-stackmagic-caret" />
          <h2>{props.title}</h2>
        </button>
        {open && props.actions}
      </div>
      {open && (
        <div className="jp-stackmagic-section-body" id={`jp-stackmagic-section-${props.id}`}>
          {props.children}
        </div>
      )}
    </section>
  );
}
