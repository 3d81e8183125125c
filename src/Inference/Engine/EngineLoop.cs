using System.Collections.Concurrent;
using System.Diagnostics;
using MoeServe.Inference.Model;
using MoeServe.Inference.Sampling;
using Microsoft.Extensions.Logging;
using MoeServe.Routing;
using TorchSharp;

namespace MoeServe.Inference.Engine;

/// <summary>
/// One engine loop, on a thread of its own, over its own sequences, scheduler and key/value cache (the model's
/// weights are shared with the other loops). Each step: schedule (which sequences, how many tokens), execute (one
/// forward pass over the flat batch), update (sample, detokenise, stop, emit). Requests join at the next step and
/// leave as soon as they finish or are cancelled.
/// </summary>
internal sealed class EngineLoop : IDisposable
{
    private readonly InferenceEngine _engine;
    private readonly ModelRunner _runner;
    private readonly EngineOptions _options;
    private readonly IEngineObserver _observer;
    private readonly ILogger _logger;
    private readonly Scheduler _scheduler;
    private readonly ConcurrentQueue<Sequence> _incoming = new();
    private readonly Dictionary<long, Sequence> _sequences = [];
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private readonly Parallel.WorkerThreads? _stepThreads;
    private int _queued; // requests handed to this loop but not yet started (incoming + waiting)
    private volatile int _running;
    private volatile int _waiting;
    private volatile int _usedBlocks;
    private long _preemptions;

    /// <param name="maxRunning">Sequences this loop runs at once (its share of Engine:MaxRunningSequences).</param>
    /// <param name="allocator">This loop's share of the cache blocks.</param>
    public EngineLoop(InferenceEngine engine, int index, MoeForCausalLM model, EngineOptions options, int maxRunning, BlockAllocator allocator,
        IEngineObserver observer, ILogger logger, RoutingConfig routing)
    {
        _engine = engine;
        _options = options;
        _observer = observer;
        _logger = logger;
        MaxRunning = maxRunning;
        _stepThreads = options.StepThreads > 1 ? new Parallel.WorkerThreads(options.StepThreads, $"moeserve-step{index}") : null;
        _runner = new ModelRunner(model, model.NewCache(allocator.FreeBlocks + 1, options.KvBlockSize), routing, _stepThreads);
        _scheduler = new Scheduler(options, allocator, maxRunning);
        _thread = new Thread(Loop) { IsBackground = true, Name = $"moeserve-engine{index}" };
        _thread.Start();
    }

    public int MaxRunning { get; }

    /// <summary>Requests handed to this loop and not yet started.</summary>
    public int Queued => Volatile.Read(ref _queued);

    /// <summary>Sequences admitted to the cache (read from any thread).</summary>
    public int Running => _running;

    /// <summary>Sequences waiting in the scheduler (read from any thread).</summary>
    public int Waiting => _waiting;

    public long Preemptions => Interlocked.Read(ref _preemptions);

    /// <summary>Blocks held by sequences, and blocks that can be held (the padding block excluded).</summary>
    public (int Used, int Total) CacheBlocks => (_usedBlocks, _runner.Cache.Blocks - 1);

    /// <summary>Takes a sequence, already counted in <see cref="Queued"/> by <see cref="Reserve"/>.</summary>
    public void Enqueue(Sequence sequence, CancellationToken cancellation)
    {
        // A client that goes away cancels its sequence; the loop frees it at the next step.
        cancellation.Register(() => { sequence.CancelRequested = true; _wake.Release(); });
        _incoming.Enqueue(sequence);
        _wake.Release();
    }

    /// <summary>Counts one more request towards this loop before it is built (see <see cref="InferenceEngine.Submit"/>).</summary>
    public void Reserve() => Interlocked.Increment(ref _queued);

    /// <summary>A request of this loop started, or finished without starting.</summary>
    private void Dequeued()
    {
        Interlocked.Decrement(ref _queued);
        _engine.Dequeued();
    }

    private void Loop()
    {
        if (_options.TorchThreads > 0) torch.set_num_threads(_options.TorchThreads);
        using var inference = torch.inference_mode();
        while (!_stop.IsCancellationRequested)
        {
            AdmitIncoming();
            DropCancelled();
            var scheduled = _scheduler.Schedule();
            PublishCounts();
            if (scheduled.IsEmpty)
            {
                try { _wake.Wait(_stop.Token); } catch (OperationCanceledException) { break; }
                continue;
            }
            Step(scheduled);
        }
        foreach (var s in _scheduler.All.ToList()) Finish(s, "cancelled");
    }

    /// <summary>Copies the scheduler's counts (owned by this thread) to the fields other threads read: admission in
    /// <see cref="InferenceEngine.Submit"/>, and every loop's totals for the observer.</summary>
    private void PublishCounts()
    {
        _running = _scheduler.Running;
        _waiting = _scheduler.Waiting;
        _usedBlocks = _runner.Cache.Blocks - 1 - _scheduler.Blocks.FreeBlocks;
        Interlocked.Exchange(ref _preemptions, _scheduler.Preemptions);
    }

    private void AdmitIncoming()
    {
        bool any = false;
        while (_incoming.TryDequeue(out var s))
        {
            _sequences[s.Id] = s;
            _scheduler.Enqueue(s);
            any = true;
        }
        if (!any) return;
        ReportQueueChange();
    }

    /// <summary>Publishes this loop's counts, then reports every loop's running and waiting totals to the observer.</summary>
    private void ReportQueueChange()
    {
        PublishCounts();
        _engine.Report(() => _observer.OnQueueChanged(_engine.Running, _engine.Waiting));
    }

    private void DropCancelled()
    {
        foreach (var s in _scheduler.All.Where(s => s.CancelRequested).ToList()) Finish(s, "cancelled");
    }

    /// <summary>execute -> update for one scheduled batch.</summary>
    private void Step(ScheduledBatch scheduled)
    {
        foreach (var (id, _) in scheduled.Sequences)
        {
            var s = _sequences[id];
            if (s.StartedAt == 0)
            {
                s.StartedAt = Stopwatch.GetTimestamp();
                Dequeued();
            }
        }
        long begin = Stopwatch.GetTimestamp();
        StepLogits logits;
        Dictionary<long, SequenceLogits> rows;
        StepRoutingStats loads;
        try
        {
            (logits, rows, loads) = _runner.Execute(scheduled, _sequences);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A failing step must not take the server down: fail the sequences it carried.
            _logger.LogError(e, "Engine step of {Tokens} tokens over {Sequences} sequences failed", scheduled.TotalTokens, scheduled.Sequences.Count);
            foreach (var (id, _) in scheduled.Sequences) Fail(_sequences[id], e);
            return;
        }
        double seconds = Stopwatch.GetElapsedTime(begin).TotalSeconds;
        foreach (var (id, count) in scheduled.Sequences) Update(_sequences[id], count, logits, rows);
        PublishCounts();
        _engine.Report(() => _observer.OnStep(new StepStats(scheduled.TotalTokens, scheduled.Sequences.Count, loads, seconds, _engine.Running,
            _engine.Waiting, _engine.KvCacheUsage, _engine.Preemptions)));
    }

    private void Update(Sequence s, int tokensRun, StepLogits logits, Dictionary<long, SequenceLogits> rows)
    {
        rows.TryGetValue(s.Id, out var row);
        if (s.WantsPromptLogprobs && s.ComputedTokens < s.PromptLength) RecordPromptLogprobs(s, tokensRun, logits, row);
        s.ComputedTokens += tokensRun;
        if (s.Uncomputed > 0) return; // more prompt chunks to come
        s.PromptLogprobsDone = true;

        var token = s.Sampler.Sample(logits.Row(row.FirstRow + row.Rows - 1));
        s.Tokens.Add(token.TokenId);
        long now = Stopwatch.GetTimestamp();
        if (s.Generated == 1) _observer.OnFirstToken(s.Request.Policy.ToWireName(), Stopwatch.GetElapsedTime(s.QueuedAt, now).TotalSeconds);
        else _observer.OnNextToken(Stopwatch.GetElapsedTime(s.LastTokenAt, now).TotalSeconds);
        s.LastTokenAt = now;

        // The sequence (prompt plus generated) may not outgrow the context.
        bool contextFull = s.Tokens.Count >= _engine.MaxContextTokens;
        var (delta, finish) = s.Output.Accept(token, contextFull);
        s.Events.TryWrite(new SequenceEvent
        {
            Token = token,
            TextDelta = delta,
            FinishReason = finish,
            PromptLogprobs = s.Generated == 1 ? s.PromptLogprobs : null,
            PromptTokens = s.PromptLength,
            CompletionTokens = s.Generated,
            DroppedPairs = s.DroppedPairs,
            ReroutedPairs = s.ReroutedPairs,
        });
        if (finish is not null) Finish(s, finish, eventSent: true);
    }

    private static void RecordPromptLogprobs(Sequence s, int tokensRun, StepLogits logits, SequenceLogits rows)
    {
        s.PromptLogprobs ??= [new PromptTokenLogprob(s.Request.PromptIds[0], null, [])];
        int top = s.Request.Sampling.TopLogprobs;
        // Row i predicts token ComputedTokens + i + 1; only prompt tokens are recorded here.
        for (int i = 0; i < tokensRun; i++)
        {
            int target = s.ComputedTokens + i + 1;
            if (target >= s.PromptLength) break;
            var row = logits.Row(rows.FirstRow + i);
            float logZ = Sampler.LogPartition(row);
            int id = s.Request.PromptIds[target];
            s.PromptLogprobs.Add(new PromptTokenLogprob(id, row[id] - logZ, Sampler.TopLogprobs(row, logZ, top)));
        }
    }

    private void Fail(Sequence s, Exception error)
    {
        s.Events.TryWrite(new SequenceEvent { FinishReason = "error", PromptTokens = s.PromptLength, CompletionTokens = s.Generated });
        Finish(s, "error", eventSent: true, error);
    }

    private void Finish(Sequence s, string reason, bool eventSent = false, Exception? error = null)
    {
        _scheduler.Remove(s);
        _sequences.Remove(s.Id);
        if (s.StartedAt == 0) Dequeued();
        // Account for the sequence (counts, gauges, totals) before its channel completes, which is where its reader
        // sees it end: a client whose stream has ended then never finds it still running in the engine's counts or in /metrics.
        double queued = Stopwatch.GetElapsedTime(s.QueuedAt, s.StartedAt == 0 ? Stopwatch.GetTimestamp() : s.StartedAt).TotalSeconds;
        _observer.OnSequenceFinished(new SequenceStats(s.Request.Policy.ToWireName(), s.PromptLength, s.Generated, queued, reason));
        ReportQueueChange();
        if (!eventSent) s.Events.TryWrite(new SequenceEvent { FinishReason = reason, PromptTokens = s.PromptLength, CompletionTokens = s.Generated, DroppedPairs = s.DroppedPairs, ReroutedPairs = s.ReroutedPairs });
        s.Events.TryComplete(error);
    }

    /// <summary>Stops the loop (cancelling what it holds) and frees its cache.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join(TimeSpan.FromSeconds(30));
        _wake.Dispose();
        _stepThreads?.Dispose();
        _runner.Cache.Dispose();
    }
}
