import { status } from "@grpc/grpc-js";

/**
 * Errors a handler throws on purpose. Each carries the gRPC status it maps to,
 * so the mapping lives in one place (the server wrapper) and a caller can
 * `instanceof` them in-process.
 */
export class TandemError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends TandemError {
  constructor(message: string) {
    super(status.INVALID_ARGUMENT, message);
  }
}

export class NotFoundError extends TandemError {
  constructor(message: string) {
    super(status.NOT_FOUND, message);
  }
}

export class AlreadyExistsError extends TandemError {
  constructor(message: string) {
    super(status.ALREADY_EXISTS, message);
  }
}

export class FailedPreconditionError extends TandemError {
  constructor(message: string) {
    super(status.FAILED_PRECONDITION, message);
  }
}

export class ResourceExhaustedError extends TandemError {
  constructor(message: string) {
    super(status.RESOURCE_EXHAUSTED, message);
  }
}

export class UnavailableError extends TandemError {
  constructor(message: string) {
    super(status.UNAVAILABLE, message);
  }
}

export class DeadlineExceededError extends TandemError {
  constructor(message: string) {
    super(status.DEADLINE_EXCEEDED, message);
  }
}

export class CancelledError extends TandemError {
  constructor(message: string) {
    super(status.CANCELLED, message);
  }
}

/** A request whose bytes did not decode (e.g. invalid UTF-8 in a string field). */
export class DecodeFailure {
  constructor(readonly reason: string) {}
}
