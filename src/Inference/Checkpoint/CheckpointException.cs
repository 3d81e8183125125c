namespace MoeServe.Inference.Checkpoint;

/// <summary>A checkpoint folder that cannot be served; the message names the file and, where it applies, the tensor.</summary>
public sealed class CheckpointException(string message) : Exception(message);
