using System.ComponentModel.DataAnnotations;
using System.Threading.Channels;
using MoeServe.Inference.Model;
using MoeServe.Inference.Tokenization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MoeServe.Routing;

namespace MoeServe.Inference.Engine;

/// <summary>
/// The engine: <see cref="EngineOptions.Loops"/> independent engine loops (<see cref="EngineLoop"/>), each on its own
/// thread with its own share of the running slots and the key/value cache, all sharing the model's weights. A request
/// goes to the least busy loop and stays there. With one loop every sequence shares one step; with more, the loops'
/// steps run side by side and none waits for another's (a prompt chunk in one loop does not hold back the other's
/// decoding, and one loop's sampling and streaming overlaps the other's forward pass).
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly ModelTokenizer _tokenizer;
    private readonly EngineOptions _options;
    private readonly EngineLoop[] _loops;
    private long _nextId;
    private int _queued; // requests accepted but not yet started, over all loops

    /// <param name="maxContextTokens">Longest sequence (prompt plus generated) served; at most the model's max_position_embeddings.</param>
    /// <exception cref="ArgumentException">A loop's share of the cache budget cannot hold one sequence of the full context.</exception>
    public InferenceEngine(MoeForCausalLM model, ModelTokenizer tokenizer, EngineOptions options, IEngineObserver observer,
        int? maxContextTokens = null, ILogger? logger = null, RoutingConfig? routing = null)
    {
        MaxContextTokens = Math.Min(maxContextTokens ?? model.Config.MaxPositionEmbeddings, model.Config.MaxPositionEmbeddings);
        int loops = options.Loops;
        // Each loop gets an equal share of the cache and of the running slots.
        int tokensPerLoop = options.KvCacheTokens / loops;
        var allocators = Enumerable.Range(0, loops)
            .Select(_ => new BlockAllocator(1 + (tokensPerLoop + options.KvBlockSize - 1) / options.KvBlockSize, options.KvBlockSize)).ToArray();
        if (allocators[0].BlocksFor(MaxContextTokens + 1) > allocators[0].FreeBlocks)
            throw new ArgumentException(loops == 1
                ? $"Engine:KvCacheTokens ({options.KvCacheTokens}) must hold at least one sequence of the full context ({MaxContextTokens} tokens)"
                : $"Engine:KvCacheTokens ({options.KvCacheTokens}) shared by Engine:Loops ({loops}) must give each loop at least one sequence of the full context ({MaxContextTokens} tokens)");
        // The options' own cross-field rules, for callers that bind them without the server's validation.
        foreach (var problem in options.Validate(new ValidationContext(options)))
            throw new ArgumentException($"{EngineOptions.Section}:{string.Join(",", problem.MemberNames)}: {problem.ErrorMessage}");
        _tokenizer = tokenizer;
        _options = options;
        var log = logger ?? NullLogger.Instance;
        _loops = Enumerable.Range(0, loops).Select(i => new EngineLoop(this, i, model, options, RunningShare(options.MaxRunningSequences, loops, i),
            allocators[i], observer, log, routing ?? RoutingConfig.Default)).ToArray();
        Model = model;
    }

    /// <summary>Loop <paramref name="index"/>'s share of <paramref name="total"/> running slots: as even as can be.</summary>
    private static int RunningShare(int total, int loops, int index) => total / loops + (index < total % loops ? 1 : 0);

    public MoeForCausalLM Model { get; }
    public ModelTokenizer Tokenizer => _tokenizer;
    public int MaxContextTokens { get; }

    /// <summary>Queues a sequence on the least busy loop; events arrive on the returned reader until one carries a finish reason.</summary>
    /// <remarks>The reader's continuations run synchronously on that loop's thread (no thread-pool hop per token,
    /// measured x1.09 in tokens/s at 16 streams): code after an await on the reader must only hand the event on, as the
    /// HTTP layer's per-choice pump does, and never block or dispose the engine there.</remarks>
    /// <exception cref="EngineOverloadedException">The queue is full.</exception>
    public ChannelReader<SequenceEvent> Submit(GenerationRequest request, CancellationToken cancellation)
    {
        // Requests not yet started may fill the free running slots plus the waiting queue.
        int freeSlots = _loops.Sum(l => Math.Max(0, l.MaxRunning - l.Running));
        if (Interlocked.Increment(ref _queued) > _options.MaxQueuedRequests + freeSlots)
        {
            Interlocked.Decrement(ref _queued);
            throw new EngineOverloadedException($"the server is at capacity ({_options.MaxQueuedRequests} requests waiting); retry later");
        }
        var loop = _loops.MinBy(l => l.Running + l.Queued)!;
        loop.Reserve();
        var channel = Channel.CreateUnbounded<SequenceEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true, AllowSynchronousContinuations = true });
        loop.Enqueue(new Sequence(Interlocked.Increment(ref _nextId), request, new OutputProcessor(_tokenizer, request), channel), cancellation);
        return channel.Reader;
    }

    /// <summary>
    /// Runs a loop's report to the observer under one lock. A report reads every loop's published counts: without the
    /// lock, a loop could read another's count just before that one drops it and set the gauge after that loop's
    /// own, fresher report, leaving a stale total on an idle server.
    /// </summary>
    internal void Report(Action report)
    {
        lock (_reportLock) report();
    }

    private readonly object _reportLock = new();

    /// <summary>A request left the queue (started, or finished before starting); called by its loop.</summary>
    internal void Dequeued() => Interlocked.Decrement(ref _queued);

    /// <summary>Sequences admitted to the cache, over all loops.</summary>
    public int Running => _loops.Sum(l => l.Running);

    /// <summary>Sequences waiting for a slot or cache blocks, over all loops.</summary>
    public int Waiting => _loops.Sum(l => l.Waiting);

    /// <summary>Sequences evicted from the cache so far to make room for others (recomputed later).</summary>
    public long Preemptions => _loops.Sum(l => l.Preemptions);

    /// <summary>Share of the key/value cache blocks held by sequences, over all loops, 0..1.</summary>
    public double KvCacheUsage
    {
        get
        {
            int used = 0, total = 0;
            foreach (var l in _loops)
            {
                var (u, t) = l.CacheBlocks;
                used += u;
                total += t;
            }
            return total == 0 ? 0 : (double)used / total;
        }
    }

    public void Dispose()
    {
        foreach (var loop in _loops) loop.Dispose();
    }
}
