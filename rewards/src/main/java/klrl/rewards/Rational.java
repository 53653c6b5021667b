package klrl.rewards;

import java.math.BigDecimal;
import java.math.BigInteger;

/** An exact fraction n/d in lowest terms with d > 0; sizes are bounded so no input can exhaust memory. */
record Rational(BigInteger num, BigInteger den) {
    static final int MAX_BITS = 20_000;
    static final Rational ZERO = new Rational(BigInteger.ZERO, BigInteger.ONE);
    static final Rational ONE = new Rational(BigInteger.ONE, BigInteger.ONE);

    /** Thrown when a result would be too large to hold exactly; callers fall back to floating point. */
    static final class TooLarge extends RuntimeException {
        TooLarge() {
            super(null, null, false, false);
        }
    }

    static Rational of(BigInteger n, BigInteger d) {
        if (d.signum() == 0) {
            throw new ArithmeticException("division by zero");
        }
        if (d.signum() < 0) {
            n = n.negate();
            d = d.negate();
        }
        BigInteger g = n.gcd(d);
        if (!g.equals(BigInteger.ONE) && g.signum() != 0) {
            n = n.divide(g);
            d = d.divide(g);
        }
        if (n.bitLength() > MAX_BITS || d.bitLength() > MAX_BITS) {
            throw new TooLarge();
        }
        return new Rational(n, d.signum() == 0 ? BigInteger.ONE : d);
    }

    static Rational of(long n) {
        return new Rational(BigInteger.valueOf(n), BigInteger.ONE);
    }

    /** Exact value of a decimal literal such as "12.50" or "1.5e-3". */
    static Rational parse(String decimal) {
        BigDecimal b = new BigDecimal(decimal);
        if (Math.abs(b.scale()) > 5_000) {
            throw new TooLarge();
        }
        BigInteger unscaled = b.unscaledValue();
        int scale = b.scale();
        return scale >= 0 ? of(unscaled, BigInteger.TEN.pow(scale)) : of(unscaled.multiply(BigInteger.TEN.pow(-scale)), BigInteger.ONE);
    }

    Rational add(Rational o) {
        return of(num.multiply(o.den).add(o.num.multiply(den)), den.multiply(o.den));
    }

    Rational sub(Rational o) {
        return add(o.negate());
    }

    Rational mul(Rational o) {
        return of(num.multiply(o.num), den.multiply(o.den));
    }

    Rational div(Rational o) {
        return of(num.multiply(o.den), den.multiply(o.num));
    }

    Rational negate() {
        return new Rational(num.negate(), den);
    }

    boolean isInteger() {
        return den.equals(BigInteger.ONE);
    }

    /** this^e for an integer exponent, refusing results beyond MAX_BITS before computing them. */
    Rational pow(Rational e) {
        if (!e.isInteger()) {
            throw new TooLarge();
        }
        int sign = e.num.signum();
        BigInteger abs = e.num.abs();
        long bits = Math.max(num.bitLength(), den.bitLength());
        if (abs.bitLength() > 31 || bits * abs.longValue() > MAX_BITS) {
            if (num.abs().equals(den)) { // ±1
                return abs.testBit(0) ? this : ONE;
            }
            if (num.signum() == 0) {
                return sign < 0 ? null : ZERO;
            }
            throw new TooLarge();
        }
        int k = abs.intValue();
        Rational r = of(num.pow(k), den.pow(k));
        return sign < 0 ? ONE.div(r) : r;
    }

    /** The exact square root when both parts are perfect squares, else null. */
    Rational sqrt() {
        if (num.signum() < 0) {
            return null;
        }
        BigInteger a = num.sqrt(), b = den.sqrt();
        return a.multiply(a).equals(num) && b.multiply(b).equals(den) ? of(a, b) : null;
    }

    double toDouble() {
        double v = new BigDecimal(num).divide(new BigDecimal(den), java.math.MathContext.DECIMAL64).doubleValue();
        return v;
    }
}
