using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// Keys and values of one sequence for every layer, stored contiguously and grown in blocks so that a
/// step appends in place instead of concatenating the whole cache.
/// </summary>
public sealed class SequenceKvCache : IDisposable
{
    private const int GrowthBlock = 64;
    private readonly Tensor?[] _keys;   // per layer [capacity, kvHeads, headDim]
    private readonly Tensor?[] _values; // per layer [capacity, kvHeads, headDim]
    private readonly int _kvHeads, _headDim;
    private readonly ScalarType _dtype;
    private readonly Device _device;
    private long _capacity;

    public SequenceKvCache(int layers, int kvHeads, int headDim, ScalarType dtype, Device device)
    {
        _keys = new Tensor?[layers];
        _values = new Tensor?[layers];
        _kvHeads = kvHeads;
        _headDim = headDim;
        _dtype = dtype;
        _device = device;
    }

    /// <summary>Tokens whose keys and values are stored (the next position to write).</summary>
    public long Length { get; private set; }

    /// <summary>Makes room for <paramref name="total"/> tokens in every layer.</summary>
    public void Reserve(long total)
    {
        if (total <= _capacity) return;
        long capacity = (total + GrowthBlock - 1) / GrowthBlock * GrowthBlock;
        for (int layer = 0; layer < _keys.Length; layer++)
        {
            _keys[layer] = Grow(_keys[layer], capacity);
            _values[layer] = Grow(_values[layer], capacity);
        }
        _capacity = capacity;
    }

    private Tensor Grow(Tensor? old, long capacity)
    {
        var grown = torch.empty([capacity, _kvHeads, _headDim], _dtype, _device).DetachFromDisposeScope();
        if (old is not null)
        {
            using (var dst = grown.narrow(0, 0, Length)) using (var src = old.narrow(0, 0, Length)) dst.copy_(src);
            old.Dispose();
        }
        return grown;
    }

    /// <summary>Writes the new tokens' keys and values and returns views of the whole sequence so far.</summary>
    /// <param name="k">[L, kvHeads, headDim] keys of the new tokens at positions Length..Length+L-1.</param>
    /// <param name="v">[L, kvHeads, headDim] values of the new tokens.</param>
    /// <returns>Keys and values [Length + L, kvHeads, headDim] (views into the cache).</returns>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor k, Tensor v)
    {
        long l = k.shape[0];
        var keys = _keys[layer] ?? throw new InvalidOperationException("Reserve before Append");
        var values = _values[layer]!;
        using (var dst = keys.narrow(0, Length, l)) dst.copy_(k);
        using (var dst = values.narrow(0, Length, l)) dst.copy_(v);
        return (keys.narrow(0, 0, Length + l), values.narrow(0, 0, Length + l));
    }

    /// <summary>Called once per forward pass, after every layer appended <paramref name="tokens"/> tokens.</summary>
    public void Advance(long tokens) => Length += tokens;

    public void Dispose()
    {
        foreach (var t in _keys) t?.Dispose();
        foreach (var t in _values) t?.Dispose();
    }
}
