namespace MoeServe.Inference.Engine;

/// <summary>
/// Hands out key/value cache blocks by number. Block 0 is reserved (the padding block of the paged
/// cache), so blocks 1..count-1 are allocatable. Integers only: the tensors live in PagedKvCache.
/// </summary>
public sealed class BlockAllocator
{
    private readonly Stack<int> _free;

    public BlockAllocator(int blocks, int blockSize)
    {
        if (blocks < 2) throw new ArgumentOutOfRangeException(nameof(blocks), "at least one block besides the reserved block 0");
        BlockSize = blockSize;
        // Pushed in reverse so low-numbered blocks are used first (easier to read in a debugger).
        _free = new Stack<int>(Enumerable.Range(1, blocks - 1).Reverse());
    }

    public int BlockSize { get; }
    public int FreeBlocks => _free.Count;

    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    /// <summary>Adds blocks to <paramref name="held"/> until it covers <paramref name="tokens"/> tokens; false (and no change) if too few are free.</summary>
    public bool TryCover(List<int> held, int tokens)
    {
        int needed = BlocksFor(tokens) - held.Count;
        if (needed <= 0) return true;
        if (needed > _free.Count) return false;
        for (int i = 0; i < needed; i++) held.Add(_free.Pop());
        return true;
    }

    public void Free(List<int> held)
    {
        foreach (var b in held) _free.Push(b);
        held.Clear();
    }
}
