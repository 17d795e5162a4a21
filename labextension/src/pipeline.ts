/**
 * The notebook's side: "Run as pipeline" and "Mark cell as step".
 */
import { InputDialog, Notification, showErrorMessage } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';

import { IRun, path, requestAPI } from './api';
import { duration, shortId } from './format';
import { startRun } from './rundialog';

/** The rule `%%step` applies to names: they become file and task names. */
const STEP_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;
const STEP_LINE = /^%%step(\s+(\S+))?/;

/**
 * Save the notebook, ask for the run's options, run it on the active stack,
 * and tell how it goes. `onStarted` hears of the run as soon as it is recorded.
 *
 * The run goes on in the server even if the tab is closed; the sidebar lists it.
 * A run that cannot start says why in a dialog, whole (a notification cuts long text).
 */
export async function runAsPipeline(
  panel: NotebookPanel,
  onStarted: (run: string) => void = () => undefined
): Promise<IRun | null> {
  const notebook = panel.context.localPath;
  const name = notebook.split('/').pop();
  let started: string | null;
  try {
    await panel.context.save();
    started = await startRun(notebook);
  } catch (error) {
    await showErrorMessage(`${name} did not run as a pipeline`, (error as Error).message);
    return null;
  }
  if (!started) {
    return null;
  }
  onStarted(started);
  return await follow(started);
}

/** A notification following the run to its end, with a button to cancel it meanwhile. */
async function follow(id: string): Promise<IRun | null> {
  const cancel = {
    label: 'Cancel run',
    caption: 'Stop its steps and record it as cancelled',
    callback: () => {
      requestAPI(path('runs', id, 'cancel'), 'POST', {}).catch((error: Error) =>
        Notification.error(`Run ${shortId(id)} was not cancelled: ${error.message}`)
      );
    }
  };
  const notice = Notification.emit(`Run ${shortId(id)} started…`, 'in-progress', {
    autoClose: false,
    actions: [cancel]
  });
  try {
    let run = await requestAPI<IRun>(path('runs', id));
    while (run.status === 'running') {
      const done = run.steps.filter(s => ['completed', 'cached'].includes(s.status)).length;
      const current = run.steps.find(s => s.status === 'running');
      Notification.update({
        id: notice,
        message:
          `Run ${shortId(run.id)} of ${run.pipeline} on ${run.stack}: ` +
          `${done}/${run.steps.length} steps done` +
          (current ? `, running ${current.name}` : '') +
          ` (${duration(run)})`,
        actions: [cancel]
      });
      // every second at first; a long run (a cloud VM, say) every five: each look asks the server
      const waited = Date.now() - Date.parse(run.started_at);
      await new Promise(resolve => setTimeout(resolve, waited < 30000 ? 1000 : 5000));
      run = await requestAPI<IRun>(path('runs', id));
    }
    const succeeded = run.status === 'completed';
    Notification.update({
      id: notice,
      type: succeeded ? 'success' : run.status === 'cancelled' ? 'warning' : 'error',
      message: succeeded
        ? `Run ${shortId(run.id)} of ${run.pipeline} completed in ${duration(run)} on ${run.stack}`
        : `Run ${shortId(run.id)} of ${run.pipeline} ${run.status}: ${run.error ?? 'see the Stacks sidebar'}`,
      autoClose: succeeded ? 6000 : false,
      actions: []
    });
    return run;
  } catch (error) {
    Notification.update({
      id: notice,
      type: 'error',
      message: `Run ${shortId(id)} cannot be followed: ${(error as Error).message}`,
      autoClose: false,
      actions: []
    });
    return null;
  }
}

/** A name no other step of the notebook has: step1, step2, ... */
function freshStepName(panel: NotebookPanel): string {
  const taken = new Set<string>();
  for (const cell of panel.content.model?.cells ?? []) {
    const name = STEP_LINE.exec(cell.sharedModel.getSource())?.[2];
    if (name) {
      taken.add(name);
    }
  }
  let n = taken.size + 1;
  while (taken.has(`step${n}`)) {
    n += 1;
  }
  return `step${n}`;
}

/** Put `%%step NAME` on the active code cell's first line (renaming a step it already is). */
export async function markCellAsStep(panel: NotebookPanel): Promise<void> {
  const cell = panel.content.activeCell;
  if (!cell || cell.model.type !== 'code') {
    Notification.warning('Only a code cell can be a step: select one first.', { autoClose: 4000 });
    return;
  }
  const source = cell.model.sharedModel.getSource();
  const current = STEP_LINE.exec(source);
  const answer = await InputDialog.getText({
    title: 'Mark cell as step',
    label: 'Step name (letters, digits, "-" or "_", starting with a letter)',
    text: current?.[2] ?? freshStepName(panel),
    okLabel: 'Mark'
  });
  const name = answer.value?.trim();
  if (!answer.button.accept || !name) {
    return;
  }
  if (!STEP_NAME.test(name)) {
    Notification.error(
      `"${name}" cannot name a step: use up to 63 letters, digits, "-" or "_", starting with a letter.`,
      { autoClose: 6000 }
    );
    return;
  }
  const marked = current
    ? source.replace(STEP_LINE, `%%step ${name}`)
    : `%%step ${name}\n${source}`;
  cell.model.sharedModel.setSource(marked);
}
