import { runService } from "@tandem/service-kit";
import { indexerConfig } from "./config.js";
import { startIndexer } from "./service.js";

runService("doc-indexer", () => startIndexer(indexerConfig()));
