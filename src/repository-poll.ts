import type { Logger } from 'pino';
import type { Config } from './config/index.js';

export type RepositoryPoll = {
  everyMs: number;
  /** The config file read again. */
  reread: () => Promise<Config>;
  /** A config and its models' files as one string (model files by their stamps): equal when nothing changed. */
  fingerprint: (config: Config) => Promise<string>;
  /** The fingerprint of what runs now (after any reload, by this poll, SIGHUP or the admin API). */
  running: () => string;
  reload: (config: Config) => Promise<unknown>;
  log: Logger;
};

/**
 * Triton's repository polling (`--repository-poll-secs`): every `everyMs` the config file is read again and, when
 * it or a model's files differ from what runs (a new version's folder, new weights, an edited model entry), applied
 * as a reload applies it. A config that does not check out is logged once and left alone until it changes again.
 * Returns a function that stops polling.
 */
export function pollRepository({ everyMs, reread, fingerprint, running, reload, log }: RepositoryPoll): () => void {
  let busy = false;
  let refused: string | undefined; // what failed last: not tried again until it changes
  const refuse = (key: string, err: Error) => {
    if (key !== refused) log.error({ err: err.message }, 'repository poll: config not reloaded, nothing changed');
    refused = key;
  };
  const poll = async () => {
    let next: Config;
    try {
      next = await reread();
    } catch (err) {
      return refuse(`unreadable: ${(err as Error).message}`, err as Error);
    }
    const seen = await fingerprint(next);
    if (seen === running() || seen === refused) return;
    log.info('repository poll: the config or a model’s files changed, reloading');
    await reload(next).then(
      () => {
        refused = undefined;
      },
      (err: Error) => refuse(seen, err),
    );
  };
  const timer = setInterval(() => {
    if (busy) return; // (a reload taking longer than the interval: the next tick looks again)
    busy = true;
    poll()
      .catch((err: Error) => log.error({ err: err.message }, 'repository poll failed'))
      .finally(() => {
        busy = false;
      });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
