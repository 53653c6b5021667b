package klrl.data;

/** One problem: the question text, the gold answer (bare or a solution with \boxed{}), and where it came from. */
public record Example(String question, String gold, String source) {}
