using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// The key/value memory of every sequence, in fixed-size blocks (paged attention's layout): per layer one
/// tensor of [blocks * blockSize, kvHeads, headDim] "slots". A sequence's token at position p lives in slot
/// blockIds[p / blockSize] * blockSize + p % blockSize, so sequences grow without copying and memory is
/// freed block by block. Which blocks belong to whom is decided by the scheduler (integers only).
/// </summary>
public sealed class PagedKvCache : IDisposable
{
    private readonly Tensor[] _keys;   // per layer [slots, kvHeads, headDim]
    private readonly Tensor[] _values; // per layer [slots, kvHeads, headDim]

    public PagedKvCache(int layers, int blocks, int blockSize, int kvHeads, int headDim, ScalarType dtype, Device device)
    {
        Blocks = blocks;
        BlockSize = blockSize;
        _keys = new Tensor[layers];
        _values = new Tensor[layers];
        // torch.empty reserves address space; pages are touched (and counted in RSS) only as blocks are used.
        // Block 0 is never handed out: zeroed, it is the padding slot of batched decode attention, where a
        // masked position still multiplies its value (uninitialised memory could hold NaN).
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = torch.empty([(long)blocks * blockSize, kvHeads, headDim], dtype, device).DetachFromDisposeScope();
            _values[l] = torch.empty([(long)blocks * blockSize, kvHeads, headDim], dtype, device).DetachFromDisposeScope();
            using (var pad = _keys[l].narrow(0, 0, blockSize)) pad.zero_();
            using (var pad = _values[l].narrow(0, 0, blockSize)) pad.zero_();
        }
        BytesPerToken = layers * 2L * kvHeads * headDim * _keys[0].ElementSize;
    }

    /// <summary>Blocks in the pool, including the reserved padding block 0.</summary>
    public int Blocks { get; }
    public int BlockSize { get; }
    public long BytesPerToken { get; }

    /// <summary>Slot of every position 0..length-1 of a sequence holding <paramref name="blockIds"/>.</summary>
    public long[] Slots(IReadOnlyList<int> blockIds, int length)
    {
        var slots = new long[length];
        for (int p = 0; p < length; p++) slots[p] = (long)blockIds[p / BlockSize] * BlockSize + p % BlockSize;
        return slots;
    }

    /// <summary>Stores the new tokens' keys and values and returns the whole sequence's.</summary>
    /// <param name="newSlots">[L] int64 slots of the new tokens.</param>
    /// <param name="allSlots">[S] int64 slots of every token of the sequence, new ones last.</param>
    /// <param name="k">[L, kvHeads, headDim] keys of the new tokens.</param>
    /// <param name="v">[L, kvHeads, headDim] values of the new tokens.</param>
    /// <returns>Keys and values [S, kvHeads, headDim] (gathered copies).</returns>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor newSlots, Tensor allSlots, Tensor k, Tensor v)
    {
        _keys[layer].index_copy_(0, newSlots, k);
        _values[layer].index_copy_(0, newSlots, v);
        return (_keys[layer].index_select(0, allSlots), _values[layer].index_select(0, allSlots));
    }

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
