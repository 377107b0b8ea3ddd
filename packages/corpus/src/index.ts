export { type CorpusLine, parseCorpusLine } from "./parse.js";
export { corpusDocuments, streamCorpusFile } from "./stream-file.js";
