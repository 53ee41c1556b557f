import { describe, expect, it } from 'vitest';
import type { Inputs } from '../tensor/index.js';
import { ResponseCache } from './response-cache.js';

const tensor = (values: number[], shape = [1, values.length]): Inputs => ({ x: { dtype: 'FP32', shape, data: Float32Array.from(values) } });
const answer = (bytes: number): Inputs => ({ y: { dtype: 'UINT8', shape: [1, bytes], data: new Uint8Array(bytes).fill(7) } });

describe('ResponseCache', () => {
  it('keys a request by its names, types, shapes and bytes, whether its bytes are whole or in parts', () => {
    const cache = new ResponseCache(1024);
    const key = cache.key(tensor([1, 2, 3, 4]));
    expect(cache.key(tensor([1, 2, 3, 4]))).toBe(key);
    expect(cache.key(tensor([1, 2, 3, 5]))).not.toBe(key);
    expect(cache.key(tensor([1, 2, 3, 4], [2, 2]))).not.toBe(key);
    expect(cache.key({ z: tensor([1, 2, 3, 4]).x })).not.toBe(key);
    expect(cache.key({ x: { dtype: 'INT32', shape: [1, 4], data: new Int32Array(Float32Array.from([1, 2, 3, 4]).buffer) } })).not.toBe(key);
    const whole = Float32Array.from([1, 2, 3, 4]);
    expect(cache.key({ x: { dtype: 'FP32', shape: [1, 4], data: whole, parts: [whole.subarray(0, 1), whole.subarray(1)] } })).toBe(key);
  });

  it('gives copies: neither the answer it was given nor one it gave out changes what it keeps', () => {
    const cache = new ResponseCache(1024);
    const given = answer(4);
    cache.set('a', given);
    (given.y.data as Uint8Array).fill(0); // a replica's shared memory, reused for the next batch
    const out = cache.get('a') as Inputs;
    expect(Array.from(out.y.data as Uint8Array)).toEqual([7, 7, 7, 7]);
    (out.y.data as Uint8Array).fill(1);
    expect(Array.from((cache.get('a') as Inputs).y.data as Uint8Array)).toEqual([7, 7, 7, 7]);
  });

  it('drops the least recently used answers past its bytes, and never keeps one larger than all of them', () => {
    const cache = new ResponseCache(300);
    cache.set('a', answer(100));
    cache.set('b', answer(100));
    cache.set('c', answer(100));
    cache.get('a'); // used: b is now the oldest
    cache.set('d', answer(100));
    expect(['a', 'b', 'c', 'd'].filter((k) => cache.get(k))).toEqual(['a', 'c', 'd']);
    expect(cache.size()).toEqual({ entries: 3, bytes: 300 });
    cache.set('huge', answer(301));
    expect(cache.get('huge')).toBeUndefined();
    expect(cache.size().entries).toBe(3);
  });
});
