/**
 * stackmagic in JupyterLab: the "Stacks" sidebar, "Run as pipeline" on every
 * notebook's toolbar, and "Mark cell as step".
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  ToolbarButton,
  WidgetTracker
} from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { runIcon } from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONValue } from '@lumino/coreutils';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

import { comparisonId, comparisonWidget, ComparisonView } from './compare';
import { DRIVE_NAME, StepNotebookDrive, stepNotebookPath } from './drive';
import { StackmagicModel } from './model';
import { StacksPanel } from './panel';
import { markCellAsStep, runAsPipeline } from './pipeline';
import { createRunView, OPEN_RUN_COMMAND, RunView, runViewId } from './runview';

const CommandIDs = {
  runPipeline: 'stackmagic:run-pipeline',
  markStep: 'stackmagic:mark-step',
  openStepNotebook: 'stackmagic:open-step-notebook',
  compareRuns: 'stackmagic:compare-runs',
  showSidebar: 'stackmagic:show-sidebar'
} as const;

const CATEGORY = 'stackmagic';

/** "Run as pipeline" on each notebook's toolbar. */
class RunButtonExtension implements DocumentRegistry.IWidgetExtension<
  NotebookPanel,
  INotebookModel
> {
  constructor(private readonly _app: JupyterFrontEnd) {}

  createNew(panel: NotebookPanel): IDisposable {
    if (panel.context.path.startsWith(`${DRIVE_NAME}:`)) {
      return new DisposableDelegate(() => undefined); // an executed step notebook: not a pipeline
    }
    const button = new ToolbarButton({
      className: 'jp-stackmagic-run-button',
      icon: runIcon,
      label: 'Run as pipeline',
      tooltip: 'Save the notebook and run its %%step cells as a pipeline on the active stack',
      onClick: () => {
        void this._app.commands.execute(CommandIDs.runPipeline, { path: panel.context.path });
      }
    });
    panel.toolbar.insertItem(10, 'stackmagic-run-pipeline', button);
    return new DisposableDelegate(() => button.dispose());
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'stackmagic:plugin',
  description: 'Stacks, runs and pipeline commands of stackmagic.',
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    documents: IDocumentManager,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const { commands, shell } = app;
    documents.services.contents.addDrive(new StepNotebookDrive());

    const model = new StackmagicModel();
    const panel = new StacksPanel(model, {
      openStepNotebook: (run, step) =>
        void commands.execute(CommandIDs.openStepNotebook, { run, step }),
      openRun: run => void commands.execute(OPEN_RUN_COMMAND, { run }),
      compareRuns: runs => void commands.execute(CommandIDs.compareRuns, { runs })
    });
    shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, 'stackmagic-sidebar');
    // run views and comparisons come back after a reload, as JupyterLab's own tabs do
    const runViews = new WidgetTracker<MainAreaWidget<RunView>>({ namespace: 'stackmagic-run' });
    const comparisons = new WidgetTracker<MainAreaWidget<ComparisonView>>({
      namespace: 'stackmagic-compare'
    });
    /** Show the tab with that id if it is open; else the one `create` makes, tracked. */
    const show = <T extends MainAreaWidget>(
      tracker: WidgetTracker<T>,
      id: string,
      create: () => T
    ): T => {
      let widget = tracker.find(open => open.id === id);
      if (!widget) {
        widget = create();
        void tracker.add(widget);
        shell.add(widget, 'main');
      }
      shell.activateById(widget.id);
      return widget;
    };

    /** The notebook a command acts on: the one it names, else the current one. */
    const notebookFor = (args: { path?: unknown }): NotebookPanel | null =>
      (typeof args.path === 'string'
        ? notebooks.find(nb => nb.context.path === args.path)
        : notebooks.currentWidget) ?? null;

    commands.addCommand(CommandIDs.runPipeline, {
      label: 'Run as Pipeline',
      caption: 'Save the notebook and run it as a pipeline on the active stack',
      icon: runIcon,
      isEnabled: args => notebookFor(args) !== null,
      execute: async args => {
        const notebook = notebookFor(args);
        if (notebook) {
          await runAsPipeline(notebook, () => void model.refreshRuns());
          await model.refresh();
        }
      }
    });

    commands.addCommand(CommandIDs.markStep, {
      label: 'Mark Cell as Step',
      caption: 'Insert %%step NAME at the top of the active cell',
      isEnabled: () => notebooks.activeCell?.model.type === 'code',
      execute: async () => {
        const notebook = notebooks.currentWidget;
        if (!notebook) {
          return;
        }
        // from the context menu: the cell under the pointer, which may not be the active one
        const clicked = app.contextMenuHitTest(node => node.classList.contains('jp-Cell'));
        const index = notebook.content.widgets.findIndex(cell => cell.node === clicked);
        if (index >= 0) {
          notebook.content.activeCellIndex = index;
        }
        await markCellAsStep(notebook);
      }
    });

    commands.addCommand(CommandIDs.openStepNotebook, {
      label: args => `Open the Executed Notebook of Step ${textArgument(args.step)}`,
      execute: args => {
        const [run, step] = [textArgument(args.run), textArgument(args.step)];
        // a record of what ran, read-only: no kernel starts for it, nor may one be chosen
        const widget = documents.openOrReveal(
          stepNotebookPath(run, step),
          'Notebook',
          undefined,
          undefined,
          { shouldStart: false, canStart: false, autoStartDefault: false }
        );
        if (widget) {
          widget.title.caption = `The notebook step ${step} of run ${run} left (read-only)`;
        }
        return widget;
      }
    });

    commands.addCommand(OPEN_RUN_COMMAND, {
      label: args => `Open Run ${textArgument(args.run)}`,
      execute: args => {
        const run = textArgument(args.run);
        return show(runViews, runViewId(run), () =>
          createRunView(run, {
            openStepNotebook: (id, step) =>
              void commands.execute(CommandIDs.openStepNotebook, { run: id, step }),
            openRun: id => void commands.execute(OPEN_RUN_COMMAND, { run: id })
          })
        );
      }
    });

    commands.addCommand(CommandIDs.compareRuns, {
      label: 'Compare Runs',
      caption: 'Differing parameters and metrics of runs side by side',
      execute: args => {
        const runs = Array.isArray(args.runs) ? args.runs.map(textArgument) : [];
        return show(comparisons, comparisonId(runs), () => comparisonWidget(runs));
      }
    });

    if (restorer) {
      void restorer.restore(runViews, {
        command: OPEN_RUN_COMMAND,
        args: widget => ({ run: widget.content.runId }),
        name: widget => widget.content.runId
      });
      void restorer.restore(comparisons, {
        command: CommandIDs.compareRuns,
        args: widget => ({ runs: widget.content.runs }),
        name: widget => widget.content.runs.join(' ')
      });
    }

    commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show Stacks and Runs',
      execute: () => shell.activateById(panel.id)
    });

    app.contextMenu.addItem({ command: CommandIDs.markStep, selector: '.jp-CodeCell', rank: 0 });
    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        if (command !== CommandIDs.openStepNotebook && command !== CommandIDs.compareRuns) {
          palette.addItem({ command, category: CATEGORY });
        }
      }
    }
    app.docRegistry.addWidgetExtension('Notebook', new RunButtonExtension(app));
  }
};

export default plugin;

/** A command's argument that should be text; the palette runs commands with none. */
function textArgument(value: ReadonlyPartialJSONValue | undefined): string {
  return typeof value === 'string' ? value : '';
}
