using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// Per-step attention metadata shared by every layer, built once per forward pass: the cache, each
/// prefill sequence's slots, and the padded slot table of all decoding sequences.
/// </summary>
public sealed class AttentionInput(PagedKvCache cache, RotaryTables rotary) : IDisposable
{
    public PagedKvCache Cache { get; } = cache;

    /// <summary>cos/sin of every row's position.</summary>
    public RotaryTables Rotary { get; } = rotary;

    /// <summary>Every row is a decoding sequence's one new token (the steady state): no row gathers needed.</summary>
    public bool AllDecode { get; private set; }

    /// <summary>Sequences with several new tokens: attended one by one.</summary>
    public List<(int Start, int Length, int Past, Tensor NewSlots, Tensor AllSlots)> Prefills { get; } = [];

    /// <summary>Rows of the decoding sequences (one new token each), in batch order ([B] int64).</summary>
    public Tensor? DecodeRows { get; set; }

    /// <summary>[B] int64 slot of each decoding sequence's new token.</summary>
    public Tensor? DecodeNewSlots { get; set; }

    /// <summary>Decode attention reads the cache in place (<see cref="PagedDecodeAttention"/>): <see cref="DecodeSlotLists"/>
    /// is set, and <see cref="DecodeSlots"/> and <see cref="DecodeAllowed"/> are not.</summary>
    public bool DecodeInPlace => PagedDecodeAttention.Supports(Cache);

    /// <summary>Each decoding sequence's slots, in batch order (when <see cref="DecodeInPlace"/>).</summary>
    public IReadOnlyList<long[]> DecodeSlotLists { get; private set; } = [];

    /// <summary>[B, Smax] int64 slots of every position of each decoding sequence, padded with slot 0.</summary>
    public Tensor? DecodeSlots { get; set; }

    /// <summary>[B, 1, 1, Smax] bool, true where a position is the sequence's own (false on padding); null when no sequence is padded.</summary>
    public Tensor? DecodeAllowed { get; set; }

    /// <summary>
    /// Batched decode attention on a gathered copy pads every sequence to the batch's longest (in-place attention pads nothing). libtorch's CPU attention sums over the
    /// positions in blocks of vector width, so a sequence's result depends on how far it is padded, unless the padded
    /// length is a multiple of this: masked positions then only add zeros to each lane (measured: bit-identical).
    /// </summary>
    public const int BatchInvariantPositions = 16;

    /// <param name="positionMultiple">Pad decode attention to a multiple of this many positions (see <see cref="BatchInvariantPositions"/>).</param>
    public static AttentionInput Build(ForwardBatch batch, RotaryTables rotary, Device device, int positionMultiple = 1)
    {
        var input = new AttentionInput(batch.Cache, rotary);
        var decodes = batch.Sequences.Where(s => s.Length == 1 && s.Past > 0).ToList();
        foreach (var s in batch.Sequences.Where(s => !(s.Length == 1 && s.Past > 0)))
            input.Prefills.Add((s.Start, s.Length, s.Past,
                torch.tensor(s.Slots.AsSpan(s.Past, s.Length).ToArray(), device: device),
                torch.tensor(s.Slots, device: device)));
        if (decodes.Count > 0)
        {
            input.AllDecode = decodes.Count == batch.Sequences.Count;
            input.DecodeRows = torch.tensor(decodes.Select(s => (long)s.Start).ToArray(), device: device);
            input.DecodeNewSlots = torch.tensor(decodes.Select(s => s.Slots[^1]).ToArray(), device: device);
            if (input.DecodeInPlace)
            {
                input.DecodeSlotLists = decodes.Select(s => s.Slots).ToArray();
                return input;
            }
            int max = decodes.Max(s => s.Slots.Length);
            max = (max + positionMultiple - 1) / positionMultiple * positionMultiple;
            var slots = new long[decodes.Count * max];
            var allowed = new bool[decodes.Count * max];
            for (int b = 0; b < decodes.Count; b++)
            {
                var s = decodes[b].Slots;
                Array.Copy(s, 0, slots, b * max, s.Length);
                Array.Fill(allowed, true, b * max, s.Length);
            }
            input.DecodeSlots = torch.tensor(slots, device: device).view(decodes.Count, max);
            if (decodes.Any(s => s.Slots.Length < max))
                input.DecodeAllowed = torch.tensor(allowed, device: device).view(decodes.Count, 1, 1, max);
        }
        return input;
    }

    public void Dispose()
    {
        foreach (var p in Prefills) { p.NewSlots.Dispose(); p.AllSlots.Dispose(); }
        Rotary.Dispose();
        DecodeRows?.Dispose();
        DecodeNewSlots?.Dispose();
        DecodeSlots?.Dispose();
        DecodeAllowed?.Dispose();
    }
}
