using MoeServe.Inference.Model;

namespace MoeServe.Inference.Engine;

/// <summary>What happened in one engine step, for metrics.</summary>
/// <param name="Tokens">Tokens in the flat batch.</param>
/// <param name="Sequences">Sequences in the batch.</param>
/// <param name="Routing">Loads, drops and reroutes per layer and expert.</param>
/// <param name="Seconds">Wall time of the forward pass.</param>
/// <param name="Running">Sequences admitted, over all engine loops.</param>
/// <param name="Waiting">Sequences waiting, over all engine loops.</param>
/// <param name="KvCacheUsage">Share of the key/value cache blocks held by sequences, over all engine loops, 0..1.</param>
/// <param name="Preemptions">Sequences preempted since the engine started, over all loops.</param>
public sealed record StepStats(int Tokens, int Sequences, StepRoutingStats Routing, double Seconds, int Running, int Waiting,
    double KvCacheUsage, long Preemptions);

/// <summary>A finished sequence's timings (seconds) and token counts, for metrics.</summary>
public sealed record SequenceStats(string Policy, int PromptTokens, int CompletionTokens, double QueueSeconds, string FinishReason);

/// <summary>
/// Receives engine events. Implementations observe only (metrics); they never steer the engine, and
/// they must be cheap: they run on the engine loops' threads. <see cref="OnStep"/> and <see cref="OnQueueChanged"/>
/// come one at a time (their totals span the loops, so the engine serialises them); the others may come from
/// several loops at once with Engine:Loops > 1.
/// </summary>
public interface IEngineObserver
{
    void OnStep(StepStats step);
    void OnFirstToken(string policy, double secondsSinceQueued);
    void OnNextToken(double secondsSincePrevious);
    void OnSequenceFinished(SequenceStats stats);
    /// <summary>The running or waiting set changed (admission, finish, cancellation).</summary>
    void OnQueueChanged(int running, int waiting);
}

/// <summary>An observer that records nothing (benchmarks, tools).</summary>
public sealed class NullEngineObserver : IEngineObserver
{
    public static readonly NullEngineObserver Instance = new();
    public void OnStep(StepStats step) { }
    public void OnFirstToken(string policy, double secondsSinceQueued) { }
    public void OnNextToken(double secondsSincePrevious) { }
    public void OnSequenceFinished(SequenceStats stats) { }
    public void OnQueueChanged(int running, int waiting) { }
}
