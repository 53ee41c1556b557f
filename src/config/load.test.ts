import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from './load.js';

const model = { path: 'm.onnx' };

describe('parseConfig', () => {
  it('fills Modal-like defaults', () => {
    const config = parseConfig({ models: { m: model } });
    expect(config.server.port).toBe(8080);
    expect(config.models.m.device).toBe('auto');
    expect(config.models.m.batching).toMatchObject({ max_batch_size: 8, wait_ms: 2, max_queue_size: 1024, max_inputs: 1 });
    expect(config.models.m.scaling).toMatchObject({ min_containers: 0, buffer_containers: 0, scaledown_window: 60, startup_timeout: 120 });
    expect(config.models.m.cuda).toBeUndefined(); // ONNX Runtime's CUDA defaults
  });

  it('takes CUDA provider options by their ONNX Runtime names', () => {
    const cuda = { cudnn_conv_algo_search: 'HEURISTIC', gpu_mem_limit: 8 * 2 ** 30, arena_extend_strategy: 'kSameAsRequested', prefer_nhwc: true };
    expect(parseConfig({ models: { m: { ...model, device: 'cuda', cuda } } }).models.m.cuda).toEqual(cuda);
  });

  it.each([
    [{ models: { resnet: { ...model, batching: { wait_ms: 'abc' } } } }, 'models.resnet.batching.wait_ms: expected number, got "abc"'],
    [{ models: { resnet: { ...model, batching: { wait_ms: -1 } } } }, 'models.resnet.batching.wait_ms: expected number to be >=0, got -1'],
    [{ models: { resnet: { ...model, device: 'gpu' } } }, 'models.resnet.device: expected cpu, cuda, cuda:N or auto, got "gpu"'],
    [{ models: { resnet: { ...model, batching: { max_batch: 4 } } } }, 'models.resnet.batching.max_batch: unknown option'],
    [{ models: { resnet: {} } }, 'models.resnet.path: expected string, but it is missing'],
    [{ models: {} }, 'models: expected at least one model'],
    [
      { models: { m: { ...model, scaling: { min_containers: 3, max_containers: 2 } } } },
      'models.m.scaling.max_containers: max_containers must be at least min_containers',
    ],
    [{ server: { port: 70000 }, models: { m: model } }, 'server.port: expected number to be <=65535, got 70000'],
    [{ models: { m: { ...model, batching: { batch_sizes: [8, 4] } } } }, 'models.m.batching.batch_sizes: expected increasing sizes'],
    [
      { models: { m: { ...model, batching: { max_batch_size: 8, batch_sizes: [4, 16] } } } },
      'models.m.batching.batch_sizes: batch_sizes must not exceed max_batch_size',
    ],
    [
      { models: { m: { ...model, cuda: { cudnn_conv_algo_search: 'FAST' } } } },
      'models.m.cuda.cudnn_conv_algo_search: Invalid option: expected one of "EXHAUSTIVE"|"HEURISTIC"|"DEFAULT", got "FAST"',
    ],
    [{ models: { m: { ...model, cuda: { enable_cuda_graph: true } } } }, 'models.m.cuda.enable_cuda_graph: CUDA graphs replay fixed GPU addresses'],
    [{ models: { m: { ...model, cuda: { gpu_mem_limit: '8GB' } } } }, 'models.m.cuda.gpu_mem_limit: expected number'],
    [
      { server: { cors: { origins: ['https://app.example.com/'] } }, models: { m: model } },
      'server.cors.origins.0: expected an origin such as https://app.example.com (no path',
    ],
    [{ server: { cors: { origins: 'any' } }, models: { m: model } }, 'server.cors.origins: expected "*" or a list of origins, got "any"'],
    [{ capture: { sample_rate: 0.5 }, models: { m: model } }, 'capture: capture needs a url or a dir (or both)'],
    [{ capture: { url: 'http://c/e', sample_rate: 2 }, models: { m: model } }, 'capture.sample_rate: expected number to be <=1, got 2'],
    [{ capture: { url: 'http://c/e', models: ['mpl'] }, models: { m: model } }, 'capture.models.0: no model or ensemble named mpl'],
    // A name's rule in its own words; the forms a union takes; a typo in one form's options; YAML's .inf
    [{ models: { 'my model': model } }, 'models.my model: expected a model name of letters, digits, _ . -, got "my model"'],
    [{ models: { m: model }, auth: { jwt: { issuer: 'i', audience: 5 } } }, 'auth.jwt.audience: expected string or array, got 5'],
    [
      { models: { m: model }, auth: { jwt: { issuer: 'i', audience: 'a', keys: [{ pem: 'k', alg: 'RS256', kidd: 'x' }] } } },
      'auth.jwt.keys.0.kidd: unknown option',
    ],
    [
      { models: { m: model }, auth: { jwt: { issuer: 'i', audience: 'a', keys: [{ pem: 'k', alg: 'RS265', kidd: 'x' }] } } },
      'auth.jwt.keys.0.alg: Invalid option: expected one of',
    ],
    [{ models: { m: { ...model, batching: { wait_ms: Number.POSITIVE_INFINITY } } } }, 'models.m.batching.wait_ms: expected number, got Infinity'],
  ])('names the path, the value and what was expected: %j', (raw, message) => {
    expect(() => parseConfig(raw)).toThrow(ConfigError);
    expect(() => parseConfig(raw)).toThrow(message);
  });

  it('says a rule across options without the object holding them (its message names them)', () => {
    const remote = { ...model, remote: ['gpu-1:9000'], scaling: { max_containers: 2 } };
    for (const m of [remote, { ...model, vad: { sample_rate: 16000 } }, { ...model, scaling: { min_containers: 3, max_containers: 2 } }])
      expect(() => parseConfig({ models: { m } })).toThrow(/^ {2}models\.m\.\w+(\.\w+)?: [^{]*[a-z]$/m);
  });
});

describe('loadConfig', () => {
  it('resolves model paths against the file and lets $PORT override the port', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-config-'));
    const file = join(dir, 'c.yaml');
    await writeFile(file, 'server: { port: 9000 }\ncapture: { dir: captures }\nmodels:\n  m: { path: models/m.onnx, labels: m.txt }\n');
    const config = await loadConfig(file, { PORT: '1234' });
    expect(config.server.port).toBe(1234);
    expect(config.capture?.dir).toBe(join(dir, 'captures'));
    expect(config.models.m.path).toBe(join(dir, 'models/m.onnx'));
    expect(config.models.m.labels).toBe(join(dir, 'm.txt'));
    // Vertex AI's port where there is no $PORT.
    expect((await loadConfig(file, { AIP_HTTP_PORT: '8090' })).server.port).toBe(8090);
    expect((await loadConfig(file, { PORT: '1234', AIP_HTTP_PORT: '8090' })).server.port).toBe(1234);
    await expect(loadConfig(file, { AIP_HTTP_PORT: 'x' })).rejects.toThrow(/AIP_HTTP_PORT: expected a port number/);
    // Set but empty (Compose's PORT=${PORT} with PORT unset) is unset: it was port 0, a random one.
    expect((await loadConfig(file, { PORT: '' })).server.port).toBe(9000);
  });

  it('rejects YAML that does not parse', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-config-'));
    const file = join(dir, 'c.yaml');
    await writeFile(file, 'models: [unclosed\n');
    await expect(loadConfig(file, {})).rejects.toThrow(/is not valid YAML/);
  });
});
