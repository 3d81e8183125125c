using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// The key/value memory of every sequence, in fixed-size blocks (paged attention's layout): per layer one
/// tensor of [blocks * blockSize, kvHeads, headDim] "slots". A sequence's token at position p lives in slot
/// blockIds[p / blockSize] * blockSize + p % blockSize, so sequences grow without copying and memory is
/// freed block by block. Which blocks belong to whom is decided by the scheduler (integers only).
/// </summary>
public sealed unsafe class PagedKvCache : IDisposable
{
    private readonly Tensor[] _keys;   // per layer [slots, kvHeads, headDim]
    private readonly Tensor[] _values; // per layer [slots, kvHeads, headDim]
    private readonly IntPtr[] _keyPointers = [], _valuePointers = []; // per layer, first element (host float32 caches only)

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
        KvHeads = kvHeads;
        HeadDim = headDim;
        HostFloat32 = device.type == DeviceType.CPU && dtype == ScalarType.Float32;
        if (HostFloat32)
        {
            // Host tensors never move: their addresses serve PagedDecodeAttention for the cache's life.
            _keyPointers = _keys.Select(FirstElement).ToArray();
            _valuePointers = _values.Select(FirstElement).ToArray();
        }
    }

    private static IntPtr FirstElement(Tensor t)
    {
        using var first = t.narrow(0, 0, 1); // a view: its bytes span fits an int even where the whole layer would not
        fixed (byte* p = first.bytes) return (IntPtr)p;
    }

    /// <summary>Blocks in the pool, including the reserved padding block 0.</summary>
    public int Blocks { get; }
    public int BlockSize { get; }
    public long BytesPerToken { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }

    /// <summary>float32 in host memory: <see cref="PagedDecodeAttention"/> reads it in place.</summary>
    public bool HostFloat32 { get; }

    /// <summary>Address of the layer's key slot 0 ([slots, kvHeads, headDim] float32, row-major); host float32 caches only.</summary>
    public IntPtr KeyPointer(int layer) => _keyPointers[layer];

    /// <summary>Address of the layer's value slot 0, as <see cref="KeyPointer"/>.</summary>
    public IntPtr ValuePointer(int layer) => _valuePointers[layer];

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
        Store(layer, newSlots, k, v);
        return (_keys[layer].index_select(0, allSlots), _values[layer].index_select(0, allSlots));
    }

    /// <summary>Stores the new tokens' keys and values.</summary>
    /// <param name="newSlots">[L] int64 slots of the new tokens.</param>
    /// <param name="k">[L, kvHeads, headDim] keys of the new tokens.</param>
    /// <param name="v">[L, kvHeads, headDim] values of the new tokens.</param>
    public void Store(int layer, Tensor newSlots, Tensor k, Tensor v)
    {
        _keys[layer].index_copy_(0, newSlots, k);
        _values[layer].index_copy_(0, newSlots, v);
    }

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
