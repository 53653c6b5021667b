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
     * Whether two answers, each as extracted from a completion, are equal as the verifier judges a
     * prediction against a gold ({@code a} in the gold's place): what a majority vote counts as one
     * answer. Identical text is equal without a check; a check that runs out of time counts as unequal.
     */
    public boolean sameAnswer(String a, String b) {
        if (a == null || b == null || a.isBlank() || b.isBlank()) {
            return false;
        }
        if (a.strip().equals(b.strip())) {
            return true;
        }
        if (b.length() > 4 * a.length() + 40 || a.length() > 4 * b.length() + 40) { // as verify: far longer is not the same answer
            return false;
        }
        calls.incrementAndGet();
        Equivalence.ROUNDING.set(floatRounding);
        try {
            return equivalent(a, b, new Deadline(timeoutNanos));
        } catch (Deadline.Expired e) {
            timeouts.incrementAndGet();
            return false;
        } catch (RuntimeException | StackOverflowError e) {
            return false; // a model's answer in the gold's place may be anything: what cannot be compared is not the same
        } finally {
            Equivalence.ROUNDING.remove();
        }
    }

    /**
     * The same check, told step by step: for each side what was extracted, what it normalises to and
     * how it was read (a parsed expression, printed as written by hand, or text), for the completion
     * which rule found its answer and where, then the verdict and the rule that gave it — what a user
     * needs when a reward looks wrong. Keys in order: gold_extracted, gold_normalized, gold_read,
     * pred_extracted, pred_found, pred_normalized, pred_read, correct, why.
     */
    public java.util.Map<String, Object> explain(String gold, String completion) {
        java.util.Map<String, Object> out = new java.util.LinkedHashMap<>();
        Result r = verify(gold, completion);
        String g = r.gold(), p = r.extracted();
        boolean both = g != null && p != null && !g.isBlank() && !p.isBlank();
        ClockTime tg = both ? ClockTime.read(g) : null, tp = both ? ClockTime.read(p) : null;
        Boolean byTime = byTime(tg, tp);
        describe("gold", g, null, tg, byTime != null, out);
        describe("pred", p, found(extractor.find(completion), completion), tp, byTime != null, out);
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
        } else if (tg != null && tp != null) {
            why = r.correct() ? "both are times of day, the same one (" + tg + ")"
                    : "both are times of day, different ones (" + tg + " and " + tp + ")";
        } else if (byTime != null) {
            why = "a time written so that no ratio is meant (a.m./p.m., or a leading zero as in 09:30 or 1:05) equals only a time,"
                    + " and the other side is none";
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

    /**
     * The verdict of the clock-time rule: two times are equal when they are the same time of day; a
     * time written so that no ratio is meant equals nothing else. Null when the rule does not decide —
     * neither side is a time, or the only time (9:30) may be a ratio, which is then read as a/b.
     */
    static Boolean byTime(ClockTime gold, ClockTime pred) {
        if (gold != null && pred != null) {
            return gold.minutes() == pred.minutes();
        }
        if (gold != null && gold.unmistakable() || pred != null && pred.unmistakable()) {
            return false;
        }
        return null;
    }

    /** Where the completion's answer came from, in words, with its place in the completion. */
    private String found(Extractor.Found f, String completion) {
        if (f == null) {
            return "nothing: " + String.join(", ", missed(extractor.fallbacks()));
        }
        // 1-based and inclusive, as a person counts
        String span = "`" + f.answer() + "` at " + (f.end() - f.start() == 1 ? "character " + f.end()
                : "characters " + (f.start() + 1) + "–" + f.end()) + " of " + completion.length();
        return switch (f.rule()) {
            case BOXED -> "the last \\boxed{}";
            case BOXES -> "boxes side by side, read together as one list";
            case ANSWER_IS -> "a stated answer (\"the answer is …\", \"Answer: …\"): " + span;
            case LATER_MATH, LATER_NUMBER -> "the stated answer `" + f.unread() + "` does not read as math: took the last "
                    + (f.rule() == Extractor.Rule.LATER_MATH ? "math span" : "number") + " after it, " + span;
            case GSM8K -> "the \"####\" line: " + span;
            case LAST_MATH, WHOLE, LAST_NUMBER -> String.join(", ", missed(f.triedBefore())) + ": took "
                    + (f.rule() == Extractor.Rule.LAST_MATH ? "the last math span " : f.rule() == Extractor.Rule.WHOLE
                    ? "the whole text, short and without prose, " : "the last number ") + span;
        };
    }

    /** "no \boxed{}" and what each fall-back that found nothing did not find. */
    private static List<String> missed(List<Extractor.Fallback> tried) {
        List<String> out = new java.util.ArrayList<>(List.of("no \\boxed{}"));
        for (Extractor.Fallback f : tried) {
            out.add(switch (f) {
                case ANSWER_IS -> "no stated answer (\"the answer is\", \"Answer:\")";
                case GSM8K -> "no \"####\" line";
                case LAST_DOLLAR -> "no $…$ or \\(…\\) math span";
                case WHOLE -> "not a bare answer (too long, or prose)";
                case LAST_NUMBER -> "no number";
            });
        }
        return out;
    }

    /**
     * One side's extracted, normalised and read forms (and, for the completion, how its answer was
     * found). A time the clock-time rule decides on is shown as that time; one it does not (9:30 against
     * a number) reads as the ratio it is then taken for.
     */
    private static void describe(String side, String raw, String found, ClockTime time, boolean asTime,
                                 java.util.Map<String, Object> out) {
        out.put(side + "_extracted", raw);
        if (found != null) {
            out.put(side + "_found", found);
        }
        if (time != null && asTime) {
            out.put(side + "_normalized", time.toString());
            out.put(side + "_read", "time of day " + time);
            return;
        }
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
        String ratio = time != null ? " (h:mm could be a time, but the other side is none: read as a ratio)" : "";
        try {
            Node n = toNode(raw, norm, new Deadline(1_000_000_000L));
            out.put(side + "_read", n instanceof Node.Text t ? "text \"" + t.text() + "\"" : "math " + MathText.of(n) + ratio);
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
        // 9:30 and 3:10 are one ratio but two times: clock times compare as times of day
        Boolean byTime = byTime(ClockTime.read(gold), ClockTime.read(pred));
        if (byTime != null) {
            return byTime;
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
