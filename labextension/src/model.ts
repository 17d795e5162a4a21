/**
 * What the sidebar shows, kept fresh by polling the server extension.
 *
 * A `%stack set` in a kernel or a terminal writes the project's registry; the
 * server reads it anew on every request, so a one-second poll shows the change
 * within two seconds. The poll stands by while the browser tab is hidden.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import { IDisposable } from '@lumino/disposable';

import {
  COMPONENT_TYPES,
  ComponentType,
  Flavors,
  IComponent,
  IRun,
  IStack,
  path,
  requestAPI
} from './api';

/** How many recent runs the sidebar lists at first, and how many more "Show more" adds. */
export const RUNS_PAGE = 10;

/** Which runs the sidebar lists: "" is any. */
export interface IRunFilter {
  pipeline: string;
  status: string;
}

export class StackmagicModel implements IDisposable {
  constructor() {
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: 1000, backoff: true, max: 30 * 1000 },
      name: 'stackmagic:sidebar',
      standby: 'when-hidden'
    });
  }

  stacks: IStack[] = [];
  components: IComponent[] = [];
  flavors: Flavors | null = null;
  runs: IRun[] = [];
  /** True when more runs match the filter than are listed. */
  moreRuns = false;
  runFilter: IRunFilter = { pipeline: '', status: '' };
  /** The pipelines of every run listed so far: the choices of the pipeline filter. */
  pipelines: string[] = [];
  /** Why the last request failed; null once one succeeds. */
  error: string | null = null;
  /** Why the runs could not be listed (the active stack's metadata store is away). */
  runsError: string | null = null;
  /** True once the first answers came. */
  loaded = false;

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  get activeStack(): string | undefined {
    return this.stacks.find(stack => stack.active)?.name;
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  /** Ask now rather than at the next tick (after an action of the user). */
  async refresh(): Promise<void> {
    await this._poll.refresh();
    await this._poll.tick;
  }

  /** Everything anew, the registered components too (the refresh button). */
  async reload(): Promise<void> {
    this._componentsStale = true;
    await Promise.all([this.refresh(), this.refreshRuns()]);
  }

  async activate(name: string): Promise<void> {
    await this._act(() => requestAPI('active-stack', 'PUT', { name }));
  }

  async registerStack(name: string, members: Record<string, string>): Promise<void> {
    await this._act(() => requestAPI('stacks', 'POST', { name, ...members }));
  }

  async deleteStack(name: string): Promise<void> {
    await this._act(() => requestAPI(path('stacks', name), 'DELETE'));
  }

  async registerComponent(
    type: ComponentType,
    name: string,
    flavor: string,
    options: Record<string, unknown>
  ): Promise<void> {
    await this._act(() => requestAPI(path('components', type), 'POST', { name, flavor, options }));
  }

  async deleteComponent(type: ComponentType, name: string): Promise<void> {
    await this._act(() => requestAPI(path('components', type, name), 'DELETE'));
  }

  /** Ask the run to stop; it is recorded cancelled once its steps have stopped. */
  async cancelRun(id: string): Promise<void> {
    try {
      await requestAPI(path('runs', id, 'cancel'), 'POST', {});
    } finally {
      await this.refreshRuns();
    }
  }

  /** List the runs of one pipeline or status, from the latest page again. */
  async filterRuns(filter: IRunFilter): Promise<void> {
    this.runFilter = filter;
    this._runsLimit = RUNS_PAGE;
    this._changed.emit(); // the filter shows at once, its runs when they come
    await this.refreshRuns();
  }

  async showMoreRuns(): Promise<void> {
    this._runsLimit += RUNS_PAGE;
    await this.refreshRuns();
  }

  /** List the runs now (a started or cancelled run shows before the next tick). */
  async refreshRuns(): Promise<void> {
    await (this._runsAsked ??= this._refreshRuns().finally(() => (this._runsAsked = null)));
  }

  /** Carry out an action, then show its effect; a refusal throws its message. */
  private async _act(action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } finally {
      this._componentsStale = true;
      await this.refresh();
    }
  }

  private async _refresh(): Promise<void> {
    // Runs come from the active stack's metadata store, which may be slow or away: they
    // never hold up the stacks, so a click can always switch to a stack that works.
    void this.refreshRuns();
    try {
      const stacks = await requestAPI<IStack[]>('stacks');
      const componentsChanged = JSON.stringify(stacks) !== JSON.stringify(this.stacks);
      this.stacks = stacks;
      // components registered elsewhere show up at the latest every tenth tick
      this._ticks += 1;
      if (this._componentsStale || componentsChanged || this._ticks % 10 === 0) {
        await this._refreshComponents();
      }
      this.error = null;
    } catch (error) {
      this.error = (error as Error).message;
      this._changed.emit();
      throw error; // the poll backs off while the server is away
    }
    this.loaded = true;
    this._changed.emit();
  }

  private async _refreshRuns(): Promise<void> {
    let filter: IRunFilter;
    let limit: number;
    let answer: IRun[] | Error;
    do {
      ({ runFilter: filter, _runsLimit: limit } = this);
      answer = await this._listRuns(filter, limit + 1); // one more: is there more to show?
    } while (filter !== this.runFilter || limit !== this._runsLimit); // changed while asked
    if (answer instanceof Error) {
      this.runs = [];
      this.moreRuns = false;
      this.runsError = answer.message;
    } else {
      this.runs = answer.slice(0, limit);
      this.moreRuns = answer.length > limit;
      this.pipelines = [...new Set([...this.pipelines, ...answer.map(run => run.pipeline)])].sort();
      this.runsError = null;
    }
    this._changed.emit();
  }

  private async _listRuns(filter: IRunFilter, limit: number): Promise<IRun[] | Error> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (filter.pipeline) {
      query.set('pipeline', filter.pipeline);
    }
    if (filter.status) {
      query.set('status', filter.status);
    }
    try {
      return await requestAPI<IRun[]>(`runs?${query.toString()}`);
    } catch (error) {
      return error as Error;
    }
  }

  private async _refreshComponents(): Promise<void> {
    const [lists, flavors] = await Promise.all([
      Promise.all(COMPONENT_TYPES.map(type => requestAPI<IComponent[]>(path('components', type)))),
      this.flavors ?? requestAPI<Flavors>('flavors')
    ]);
    this.components = lists.flat();
    this.flavors = flavors;
    this._componentsStale = false;
  }

  private _poll: Poll;
  private _changed = new Signal<this, void>(this);
  private _componentsStale = true;
  private _ticks = 0;
  private _runsAsked: Promise<void> | null = null;
  private _runsLimit = RUNS_PAGE;
}
