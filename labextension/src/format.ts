/**
 * How runs read in a narrow panel: short ids, start times, values and durations.
 */
import { IRun } from './api';

/** "1.5 s", "2.3 min": how long a run took, or has taken so far. */
export function duration(run: IRun, now: number = Date.now()): string {
  const end = run.ended_at ? Date.parse(run.ended_at) : now;
  const seconds = Math.max(0, (end - Date.parse(run.started_at)) / 1000);
  return seconds < 120 ? `${seconds.toFixed(1)} s` : `${(seconds / 60).toFixed(1)} min`;
}

/** A run id's random tail (`20261130-035001-9fd62d` → `9fd62d`): unique enough to tell runs apart. */
export function shortId(id: string): string {
  return id.split('-').pop() ?? id;
}

/** "14:03:27" today, "28 Nov 14:03" before. */
export function startTime(iso: string, now: Date = new Date()): string {
  const started = new Date(iso);
  if (started.toDateString() === now.toDateString()) {
    return started.toLocaleTimeString([], {
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit'
    });
  }
  return started.toLocaleString([], {
    day: 'numeric',
    month: 'short',
    hour: '2-digit',
    minute: '2-digit'
  });
}

/** A parameter's or metric's value, short: numbers to four significant digits. */
export function formatValue(value: unknown): string {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
  }
  if (typeof value === 'string') {
    return value;
  }
  return value === null || value === undefined ? '–' : JSON.stringify(value);
}

/** `lr=0.1 epochs=3`, the first `limit` entries. */
export function pairs(values: Record<string, unknown> | undefined, limit = Infinity): string[] {
  return Object.entries(values ?? {})
    .slice(0, limit)
    .map(([name, value]) => `${name}=${formatValue(value)}`);
}
