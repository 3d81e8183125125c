namespace MoeServe.Cli.Load;

/// <summary>What one streamed request measured. Times in seconds from sending the request.</summary>
/// <param name="Status">HTTP status (0 when the connection failed).</param>
/// <param name="FirstToken">Time to the first token chunk, or null if none arrived.</param>
/// <param name="End">Time to the end of the stream.</param>
/// <param name="TokenGaps">Seconds between consecutive token chunks.</param>
/// <param name="OutputTokens">Completion tokens reported by the usage chunk.</param>
/// <param name="Failure">Why a request that did not succeed failed (status and body, error event, exception), for the report.</param>
public sealed record RequestTiming(int Status, double? FirstToken, double End, IReadOnlyList<double> TokenGaps, int OutputTokens, string? Failure = null)
{
    public bool Succeeded => Status == 200 && FirstToken is not null;

    /// <summary>What went wrong, in one line: <see cref="Failure"/>, or what the timing itself shows.</summary>
    public string FailureReason => Failure ?? (Status == 200 && FirstToken is null ? "200 without a token chunk" : $"status {Status}");
}
