export { canEnd, feed, MAX_INDENT, start } from './automaton.js';
export { Grammar, grammarFor, TokenConstraint, Vocabulary, vocabularyFor } from './mask.js';
export { DFA_BUDGET } from './matcher.js';
export { byteString, compileFormat, FormatError, type JsonSchema, type ResponseFormat, type Shape } from './shape.js';
