using System.Diagnostics;
using System.Threading.Channels;
using MoeServe.Inference.Model;
using MoeServe.Inference.Sampling;

namespace MoeServe.Inference.Engine;

/// <summary>Engine-side state of one generating sequence. Owned by the engine thread.</summary>
public sealed class Sequence(long id, GenerationRequest request, OutputProcessor output, Channel<SequenceEvent> events)
{
    public long Id { get; } = id;
    public GenerationRequest Request { get; } = request;
    public OutputProcessor Output { get; } = output;
    public Sampler Sampler { get; } = new(request.Sampling);
    public ChannelWriter<SequenceEvent> Events => events.Writer;
    public SequenceKvCache? Cache { get; set; }

    /// <summary>Prompt tokens already run through the model (chunked prefill advances this).</summary>
    public int PrefilledTokens { get; set; }
    public List<int> GeneratedIds { get; } = [];
    public List<PromptTokenLogprob>? PromptLogprobs { get; set; }

    /// <summary>Token to feed next while decoding: the last sampled one.</summary>
    public int LastToken => GeneratedIds[^1];
    public bool IsPrefilling => PrefilledTokens < Request.PromptIds.Length;
    public int TotalTokens => Request.PromptIds.Length + GeneratedIds.Count;

    public long QueuedAt { get; } = Stopwatch.GetTimestamp();
    public long StartedAt { get; set; }
    public long LastTokenAt { get; set; }
    public volatile bool CancelRequested;
}
