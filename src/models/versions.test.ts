import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { modelVersions, servedVersions, unnamedVersion } from './versions.js';

const dir = mkdtempSync(join(tmpdir(), 'infergate-version-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (path: string) => {
  mkdirSync(join(dir, path, '..'), { recursive: true });
  writeFileSync(join(dir, path), '');
};
// Triton's layout (a folder per version) and a name per version; what is not a version is passed over.
for (const v of ['1', '2', '10', '0', '03', 'latest']) file(`m/${v}/model.onnx`);
mkdirSync(join(dir, 'm', '4')); // a version's folder without its file
for (const v of ['1', '7']) file(`flat/model-v${v}.onnx`);

describe('model versions', () => {
  it('are the positive integers whose files exist, in a folder name or a file name, in numeric order', () => {
    expect(modelVersions(join(dir, 'm', '{version}', 'model.onnx'))).toEqual([1, 2, 10]);
    expect(modelVersions(join(dir, 'flat', 'model-v{version}.onnx'))).toEqual([1, 7]);
    expect(modelVersions(join(dir, 'missing', '{version}', 'model.onnx'))).toEqual([]);
  });

  it('are served as Triton’s version_policy says: the latest N (1 by default), all, or those listed', () => {
    const m = join(dir, 'm', '{version}', 'model.onnx');
    expect(servedVersions(m)).toEqual({ served: ['10'], missing: [] });
    expect(servedVersions(m, { latest: { num_versions: 2 } })).toEqual({ served: ['2', '10'], missing: [] });
    expect(servedVersions(m, { latest: { num_versions: 9 } })).toEqual({ served: ['1', '2', '10'], missing: [] });
    expect(servedVersions(m, { all: {} })).toEqual({ served: ['1', '2', '10'], missing: [] });
    expect(servedVersions(m, { specific: { versions: [10, 1, 4, 1] } })).toEqual({ served: ['1', '10'], missing: ['4'] });
  });

  it('give a request naming none the latest, or one drawn by the percentages of a canary split', () => {
    expect(unnamedVersion(['2', '3'])()).toBe('3');
    const draws = [0, 0.5, 0.899, 0.9, 0.999, 1];
    const split = (traffic: Record<string, number>) => draws.map((d) => unnamedVersion(['2', '3'], traffic, () => d)());
    expect(split({ 2: 90, 3: 10 })).toEqual(['2', '2', '2', '3', '3', '3']);
    expect(split({ 2: 0, 3: 100 })).toEqual(['3', '3', '3', '3', '3', '3']);
  });
});
