namespace MoeServe.Inference.Engine;

/// <summary>The waiting queue is full; the API answers 429.</summary>
public sealed class EngineOverloadedException(string message) : Exception(message);
