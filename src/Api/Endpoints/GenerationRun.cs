using System.Threading.Channels;
using MoeServe.Api.OpenAi;
using MoeServe.Inference.Engine;

namespace MoeServe.Api.Endpoints;

/// <summary>One choice's event, tagged with the choice index it belongs to.</summary>
public readonly record struct ChoiceEvent(int Choice, SequenceEvent Event);

/// <summary>
/// The sequences of one HTTP request (n choices per prompt) submitted together; their events are merged
/// into one stream in arrival order. The request's abort token cancels every sequence.
/// </summary>
public sealed class GenerationRun
{
    private readonly Channel<ChoiceEvent> _merged = Channel.CreateUnbounded<ChoiceEvent>(new UnboundedChannelOptions { SingleReader = true });
    private int _open;

    /// <exception cref="OpenAiException">429 when the engine's queue is full.</exception>
    public static GenerationRun Start(InferenceEngine engine, IReadOnlyList<GenerationRequest> requests, CancellationToken aborted)
    {
        var run = new GenerationRun { _open = requests.Count };
        // If part of the request is refused, the sequences already queued are cancelled with it.
        var cancelAll = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        try
        {
            for (int i = 0; i < requests.Count; i++) run.Pump(i, engine.Submit(requests[i], cancelAll.Token));
        }
        catch (EngineOverloadedException e)
        {
            cancelAll.Cancel();
            throw OpenAiException.Overloaded(e.Message);
        }
        return run;
    }

    private async void Pump(int choice, ChannelReader<SequenceEvent> reader)
    {
        try
        {
            await foreach (var e in reader.ReadAllAsync()) _merged.Writer.TryWrite(new ChoiceEvent(choice, e));
        }
        catch (Exception)
        {
            // The engine completes a failed sequence's channel with its error after a final "error" event.
        }
        if (Interlocked.Decrement(ref _open) == 0) _merged.Writer.TryComplete();
    }

    public IAsyncEnumerable<ChoiceEvent> ReadAllAsync(CancellationToken cancellation) => _merged.Reader.ReadAllAsync(cancellation);
}
