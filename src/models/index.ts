export { type CudaOptions, cudaOptionsEnv, cudaOptionsUnavailable, hasCudaOptions, missingCudaProvider, providerLibrary } from './cuda-options.js';
export {
  type ClassifierSpec,
  classifierSpec,
  type EmbeddingSpec,
  type EncoderInputs,
  embeddingInputs,
  embeddingOf,
  embeddingPadding,
  embeddingSpec,
  POOLINGS,
  type Pooling,
} from './embedding.js';
export { type GenerativeSpec, generativeSpec } from './generative.js';
export { FormatError, grammarFor, type JsonSchema, type ResponseFormat } from './grammar/index.js';
export { type AdapterRef, type LoraTarget, readAdapter } from './lora.js';
export { describeTensors, MODEL_ID_HEADER, multiplexChecker, multiplexedIds } from './multiplex.js';
export { type Box, ctcText, decodeImage, detectorInput, LINE_HEIGHT, lineInput, MAX_PIXELS, type Rgb, textBoxes } from './ocr.js';
export { PREFIX_BLOCK } from './prefix-cache.js';
export { encodeFrame, type Frame, type FrameHeader, FrameReader, writeFrame } from './protocol.js';
export { type FailedMessage, type ModelOpened, multiplexedPath, type ReadyMessage, type ReplicaSpec, replicaEntry } from './replica-spec.js';
export { sharedMemoryDir, TensorSlots } from './shm.js';
export { type Dim, type ModelSignature, parseSignature, readSignature, type TensorSpec } from './signature.js';
export {
  batchSignature,
  callerSignature,
  fromModelLayout,
  initialState,
  type LayoutConfig,
  type ModelLayout,
  modelLayout,
  type SequenceState,
  toModelLayout,
} from './stateful.js';
export { type ChatLayout, type ChatMessage, chatPrompt, decode, loadTokenizer, TextStream, type Tokenizer } from './text.js';
export { Framer, type PcmFormat, PcmReader, parseWav, pcmSamples, Segmenter, VAD_DEFAULTS, type VadEvent, type VadFraming, type VadSettings } from './vad.js';
export { modelVersions, servedVersions, shadowVersion, unnamedVersion, type VersionPolicy, versionsServed } from './versions.js';
