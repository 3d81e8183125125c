namespace MoeServe.Training.Train;

/// <summary>
/// A status line rewritten in place with '\r' on a terminal. When the output is redirected (a log file) it
/// writes the status as an ordinary line at most every <see cref="RedirectedInterval"/>.
/// </summary>
public sealed class ProgressLine
{
    private static readonly TimeSpan RedirectedInterval = TimeSpan.FromSeconds(30);
    private readonly TextWriter _out;
    private readonly bool _inPlace;
    private int _lastLength;
    private DateTime _lastWritten = DateTime.MinValue;

    public ProgressLine(TextWriter output, bool inPlace)
    {
        _out = output;
        _inPlace = inPlace;
    }

    /// <summary>Replaces the status line (or logs it when redirected and due, or when <paramref name="force"/>).</summary>
    public void Update(string status, bool force = false)
    {
        if (_inPlace)
        {
            _out.Write('\r' + status.PadRight(_lastLength));
            _lastLength = status.Length;
            _out.Flush();
        }
        else if (force || DateTime.UtcNow - _lastWritten >= RedirectedInterval)
        {
            _out.WriteLine(status);
            _lastWritten = DateTime.UtcNow;
        }
    }

    /// <summary>Writes a permanent line above the status line.</summary>
    public void WriteLine(string line)
    {
        if (_inPlace && _lastLength > 0)
        {
            _out.Write('\r' + new string(' ', _lastLength) + '\r');
            _lastLength = 0;
        }
        _out.WriteLine(line);
    }

    /// <summary>Ends the status line so later output starts on a fresh line.</summary>
    public void Finish()
    {
        if (_inPlace && _lastLength > 0) _out.WriteLine();
        _lastLength = 0;
    }
}
