namespace MoeServe.Training.Data.Tasks;

/// <summary>a + b and a - b with 1-3 digit numbers, a * b with 1-2 digit numbers; the answer is the integer.</summary>
public sealed class ArithmeticTask : ITaskFamily
{
    private static readonly string[] Templates = ["What is {0}?", "Compute {0}.", "{0} ="];
    private static readonly char[] Operators = ['+', '-', '*'];

    public string Name => "arithmetic";

    public TaskItem Generate(DeterministicRandom random)
    {
        char op = random.Pick(Operators);
        int maxDigits = op == '*' ? 2 : 3;
        int a = Operand(random, maxDigits), b = Operand(random, maxDigits);
        int result = op switch { '+' => a + b, '-' => a - b, _ => a * b };
        string expression = $"{a} {op} {b}";
        return new TaskItem($"{a}{op}{b}", string.Format(random.Pick(Templates), expression), result.ToString());
    }

    /// <summary>
    /// The digit count is drawn first, then the value: uniform over 0-999 would make 90% of the
    /// operands three digits long and leave small sums rare.
    /// </summary>
    private static int Operand(DeterministicRandom random, int maxDigits)
    {
        int digits = random.Next(1, maxDigits);
        return digits == 1 ? random.Next(0, 9) : random.Next(Pow10(digits - 1), Pow10(digits) - 1);
    }

    private static int Pow10(int n) => n switch { 1 => 10, 2 => 100, _ => 1000 };
}
