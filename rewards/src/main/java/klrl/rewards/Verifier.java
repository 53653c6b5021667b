package klrl.rewards;

import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Decides whether a completion's final answer equals the gold answer. Pure Java, no code execution,
 * no threads: each call runs under a cooperative deadline (parsing and evaluation check it) and
 * returns "incorrect" when it expires, counting the timeout. Thread-safe.
 */
public final class Verifier {

    /** The outcome of one check; {@code extracted} is the prediction's answer (null if none was found). */
    public record Result(boolean correct, String extracted, String gold, boolean timedOut) {}

    static final int MAX_ANSWER_CHARS = 2_000;
    private static final Set<String> MATH_WORDS = Set.of("sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos",
            "arctan", "sinh", "cosh", "tanh", "log", "exp", "sqrt", "frac", "infty", "inf", "infinity", "and", "pmatrix",
            "bmatrix", "matrix", "begin", "end", "binom", "dbinom", "cup", "emptyset", "varnothing");
    private static final Pattern WORD = Pattern.compile("(?<![\\\\a-zA-Z])[a-zA-Z]{2,}");

    private final long timeoutNanos;
    private final int floatRounding;
    private final Extractor extractor;
    private final AtomicLong calls = new AtomicLong(), timeouts = new AtomicLong();

    public Verifier(long timeoutMillis, List<Extractor.Fallback> fallbacks) {
        this(timeoutMillis, fallbacks, 6);
    }

    /**
     * @param floatRounding decimal places at which a written decimal may equal a value that rounds to
     *                      it (Math-Verify's float_rounding, default 6): with 2, 0.33 equals 1/3
     */
    public Verifier(long timeoutMillis, List<Extractor.Fallback> fallbacks, int floatRounding) {
        if (timeoutMillis <= 0) {
            throw new IllegalArgumentException("verifier timeout must be > 0 ms, got " + timeoutMillis);
        }
        this.timeoutNanos = timeoutMillis * 1_000_000L;
        this.floatRounding = floatRounding;
        this.extractor = new Extractor(fallbacks);
    }

    /** Default: 1 s timeout, all fall-backs. */
    public Verifier() {
        this(1000, Extractor.DEFAULT);
    }

    /** Extracts the answers from a gold solution (or bare answer) and a completion, then compares. */
    public Result verify(String gold, String completion) {
        calls.incrementAndGet();
        String g = Extractor.gold(gold);
        String p = extractor.extract(completion);
        if (g == null || p == null || g.isBlank() || p.isBlank()) {
            return new Result(false, p, g, false);
        }
        if (p.length() > 4 * g.length() + 40) { // an answer this much longer than the gold hedges or works on
            return new Result(false, p, g, false);
        }
        Equivalence.ROUNDING.set(floatRounding);
        try {
            return new Result(equivalent(g, p, new Deadline(timeoutNanos)), p, g, false);
        } catch (Deadline.Expired e) {
            timeouts.incrementAndGet();
            return new Result(false, p, g, true);
        } catch (Rational.TooLarge | ArithmeticException e) {
            return new Result(false, p, g, false); // numbers beyond exact arithmetic: not shown equal
        } finally {
            Equivalence.ROUNDING.remove();
        }
    }

    /**
     * The same check, told step by step: for each side what was extracted, what it normalises to and
     * how it was read (a parsed expression, or text), then the verdict and the rule that gave it — what
     * a user needs when a reward looks wrong. Keys in order: gold_extracted, gold_normalized, gold_read,
     * pred_extracted, pred_normalized, pred_read, correct, why.
     */
    public java.util.Map<String, Object> explain(String gold, String completion) {
        java.util.Map<String, Object> out = new java.util.LinkedHashMap<>();
        Result r = verify(gold, completion);
        String g = r.gold(), p = r.extracted();
        describe("gold", g, out);
        describe("pred", p, out);
        out.put("correct", r.correct());
        String why;
        if (g == null || g.isBlank()) {
            why = "no gold answer found (a bare answer, or a solution with \\boxed{})";
        } else if (p == null || p.isBlank()) {
            why = "no answer found in the completion (no \\boxed{}, no final-answer phrase, no trailing number)";
        } else if (r.timedOut()) {
            why = "the check ran out of time (counted as wrong)";
        } else if (p.length() > 4 * g.length() + 40) {
            why = "the answer is far longer than the gold (more than 4 × its length + 40): read as hedging or unfinished work";
        } else if (r.correct()) {
            String ng = (String) out.get("gold_normalized"), np = (String) out.get("pred_normalized");
            why = ng.replace(" ", "").equals(np.replace(" ", "")) ? "the normalised forms are the same"
                    : "equal as mathematical objects (exact arithmetic, intervals, sets or random-point identity)";
        } else {
            why = "not shown equal: the values, sets or expressions differ, or one side could not be read as math";
        }
        out.put("why", why);
        return out;
    }

    private static void describe(String side, String raw, java.util.Map<String, Object> out) {
        out.put(side + "_extracted", raw);
        if (raw == null || raw.isBlank() || raw.length() > MAX_ANSWER_CHARS) {
            out.put(side + "_normalized", raw);
            out.put(side + "_read", "—");
            return;
        }
        String norm;
        try {
            norm = Normalizer.normalize(raw);
        } catch (RuntimeException | StackOverflowError e) {
            out.put(side + "_normalized", raw);
            out.put(side + "_read", "text (normalising failed)");
            return;
        }
        out.put(side + "_normalized", norm);
        try {
            Node n = toNode(raw, norm, new Deadline(1_000_000_000L));
            out.put(side + "_read", n instanceof Node.Text ? "text \"" + ((Node.Text) n).text() + "\"" : "math " + n);
        } catch (RuntimeException | StackOverflowError e) {
            out.put(side + "_read", "unreadable (" + e.getClass().getSimpleName() + ")");
        }
    }

    /** Compares two already-extracted answers. */
    static boolean equivalent(String gold, String pred, Deadline dl) {
        if (gold.length() > MAX_ANSWER_CHARS || pred.length() > MAX_ANSWER_CHARS) {
            // no real answer is this long; compare as written rather than parse (normalising recurses)
            return gold.strip().equals(pred.strip());
        }
        try {
            String ng = Normalizer.normalize(gold), np = Normalizer.normalize(pred);
            if (ng.equals(np) || ng.replace(" ", "").equals(np.replace(" ", ""))) {
                return true;
            }
            return Equivalence.equal(toNode(gold, ng, dl), toNode(pred, np, dl), dl);
        } catch (StackOverflowError | LatexParser.ParseError | ArithmeticException | IndexOutOfBoundsException e) {
            return false;
        }
    }

    static Node toNode(String raw, String norm, Deadline dl) {
        if (isText(norm)) {
            return new Node.Text(Normalizer.text(raw));
        }
        try {
            return LatexParser.parse(norm, dl);
        } catch (LatexParser.ParseError e) {
            return new Node.Text(Normalizer.text(raw));
        }
    }

    /** Words that are not math (function names, "or"/"and") make an answer text. */
    static boolean isText(String norm) {
        // environment names and array column specs (\begin{array}{ccc}) are markup, not words
        Matcher m = WORD.matcher(norm.replaceAll("\\\\(begin|end)\\{[a-zA-Z*]+\\}(\\{[lcr| ]+\\})?", " "));
        while (m.find()) {
            String w = m.group();
            if (!MATH_WORDS.contains(w) && !w.equals("or") && !w.equals("pi") && (w.length() >= 3 || norm.strip().equals(w))) {
                return true;
            }
        }
        return false;
    }

    public long calls() {
        return calls.get();
    }

    public long timeouts() {
        return timeouts.get();
    }
}
