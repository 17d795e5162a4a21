/**
 * Questions asked before an action that cannot be undone.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';

import { IRun } from './api';
import { shortId } from './format';

/** Asked before a run is cancelled, from the run list or the run view. */
export async function confirmCancel(run: IRun): Promise<boolean> {
  const answer = await showDialog({
    title: `Cancel run ${shortId(run.id)} of ${run.pipeline}?`,
    body: 'Its running steps are stopped and the run is recorded as cancelled.',
    buttons: [
      Dialog.cancelButton({ label: 'Keep running' }),
      Dialog.warnButton({ label: 'Cancel run' })
    ]
  });
  return answer.button.accept;
}
