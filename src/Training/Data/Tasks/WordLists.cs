namespace MoeServe.Training.Data.Tasks;

/// <summary>
/// Small fixed vocabularies for the generated tasks. Invented names and places keep the QA answers
/// out of anything a model could know beforehand: the answer must come from the passage.
/// </summary>
public static class WordLists
{
    public static readonly IReadOnlyList<string> People =
    [
        "Mara", "Tobin", "Ilse", "Corin", "Wren", "Dalia", "Oskar", "Petra", "Quill", "Senna", "Bram", "Edda",
        "Fenn", "Gilda", "Hollis", "Ivo", "Juno", "Kael", "Lorna", "Nils", "Orla", "Rurik", "Sabel", "Talia",
    ];

    public static readonly IReadOnlyList<string> Places =
    [
        "Ashby", "Brindle", "Calder", "Dunmore", "Elmsworth", "Farrowdale", "Greymouth", "Hollin", "Ironwick", "Juniper",
        "Kestrel", "Lowmere", "Marrow", "Northby", "Oakhaven", "Pellar", "Redwater", "Stillwell", "Thornbury", "Umber",
    ];

    public static readonly IReadOnlyList<string> Objects =
    [
        "lamp", "key", "map", "compass", "lantern", "ribbon", "kettle", "flute", "hammer", "basket",
        "mirror", "candle", "scroll", "anchor", "bell", "coin", "drum", "feather", "helmet", "ladder",
    ];

    public static readonly IReadOnlyList<string> Colors =
    [
        "red", "blue", "green", "yellow", "white", "black", "silver", "golden", "brown", "purple",
    ];

    /// <summary>Everyday words for the copy and count tasks.</summary>
    public static readonly IReadOnlyList<string> Common =
    [
        "apple", "river", "stone", "cloud", "bread", "horse", "garden", "window", "winter", "summer",
        "table", "chair", "paper", "music", "forest", "bridge", "castle", "dragon", "pencil", "orange",
        "tiger", "rabbit", "candle", "button", "rocket", "planet", "ocean", "desert", "island", "valley",
        "mountain", "thunder", "shadow", "silver", "copper", "marble", "velvet", "pepper", "honey", "lemon",
        "cherry", "violet", "meadow", "harbor", "engine", "ticket", "wallet", "pillow", "blanket", "ladder",
        "circle", "square", "yellow", "purple", "morning", "evening", "kitchen", "village", "market", "letter",
        "school", "doctor", "farmer", "sailor",
    ];

    public static readonly IReadOnlyList<string> Letters =
        Enumerable.Range('a', 26).Select(c => ((char)c).ToString()).ToArray();
}
