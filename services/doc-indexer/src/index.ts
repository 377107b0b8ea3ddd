export { parseCorpusLine, streamCorpusFile } from "@tandem/corpus";
export { AnnGateway, type Target } from "./ann-gateway.js";
export { type Batch, formBatches, paddingWaste } from "./batch.js";
export { type IndexerConfig, indexerConfig, indexerConfigSchema } from "./config.js";
export { scanRanges } from "./corpus.js";
export { DEAD_LETTER_QUEUE_NAME, dropNamespace, Keys, QUEUE_NAME } from "./queue.js";
export { type RunningIndexer, startIndexer } from "./service.js";
export { type RunningWorker, startWorker } from "./worker.js";
