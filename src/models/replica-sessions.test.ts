import { describe, expect, it } from 'vitest';
import { sessionPerBatchSize } from './replica-sessions.js';

describe('sessionPerBatchSize', () => {
  it('opens a session per batch size on CUDA with several sizes, unless the config or the environment says not to', () => {
    expect(sessionPerBatchSize('cuda:0', undefined, 3)).toBe(true);
    expect(sessionPerBatchSize('cuda:1', true, 2)).toBe(true);
    expect(sessionPerBatchSize('cuda:0', false, 3)).toBe(false);
    expect(sessionPerBatchSize('cuda:0', true, 3, 'never')).toBe(false);
  });

  it('keeps one session on the CPU and for one size, unless forced', () => {
    expect(sessionPerBatchSize('cpu', true, 3)).toBe(false);
    expect(sessionPerBatchSize('cuda:0', true, 1)).toBe(false);
    expect(sessionPerBatchSize('cpu', false, 3, 'always')).toBe(true);
    expect(sessionPerBatchSize('cuda:0', true, 1, 'always')).toBe(false);
  });
});
