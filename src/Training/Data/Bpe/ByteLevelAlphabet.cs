using System.Text;

namespace MoeServe.Training.Data.Bpe;

/// <summary>
/// GPT-2's bytes_to_unicode: the printable Latin-1 bytes stand for themselves and the other 68 bytes
/// (controls, space, 0x7F-0xA0, 0xAD) for U+0100 upwards in byte order, so that no token string
/// contains whitespace ("Ġ" is a space, "Ċ" a newline). Hugging Face and Microsoft.ML.Tokenizers
/// (ByteLevel = true) both expect vocabulary strings in this alphabet.
/// </summary>
public static class ByteLevelAlphabet
{
    private static readonly char[] Map = Build();

    public static char ForByte(byte b) => Map[b];

    /// <summary>The UTF-8 bytes of <paramref name="text"/>, each written as its alphabet character.</summary>
    public static string Encode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = Map[bytes[i]];
        return new string(chars);
    }

    private static char[] Build()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }
}
