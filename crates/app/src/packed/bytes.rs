//! The bytes of a packed state: LEB128 varints, day numbers and the
//! reader that checks every value as it goes (cut or malformed bytes give an
//! error, never a panic).

use super::*;

pub(super) fn day(d: NaiveDate) -> i32 {
    d.num_days_from_ce()
}

/// The first day of [`DATES`]: 1 January 1950.
pub(super) const FIRST_DAY: i32 = 711_858;

/// Every date from 1950 to 2149 by day number: chrono works a date out of
/// a day number with divisions and tables (a tenth of the time an
/// aggregate view spent unpacking); this is one load.
pub(super) static DATES: std::sync::LazyLock<Box<[NaiveDate]>> = std::sync::LazyLock::new(|| {
    (FIRST_DAY..FIRST_DAY + 73_049)
        .map(|d| NaiveDate::from_num_days_from_ce_opt(d).expect("a day of 1950-2149"))
        .collect()
});

/// The date of a day number (days from the common era, 1 January 1 = 1).
pub(super) fn date_of_day(d: i32) -> Option<NaiveDate> {
    match d
        .checked_sub(FIRST_DAY)
        .and_then(|i| DATES.get(usize::try_from(i).ok()?))
    {
        Some(date) => Some(*date),
        None => NaiveDate::from_num_days_from_ce_opt(d),
    }
}

pub(super) struct Writer {
    pub(super) out: Vec<u8>,
    /// The referral's day number: other dates are offsets from it.
    pub(super) base: i32,
}

impl Writer {
    pub(super) fn byte(&mut self, b: u8) {
        self.out.push(b);
    }

    pub(super) fn flag(&mut self, f: bool) {
        self.out.push(f as u8);
    }

    pub(super) fn uint(&mut self, v: u64) {
        varint::write(&mut self.out, v);
    }

    pub(super) fn int(&mut self, v: i64) {
        self.uint(varint::zigzag(v));
    }

    pub(super) fn date(&mut self, d: NaiveDate) {
        self.int((day(d) - self.base) as i64);
    }

    /// 0 for none, else the offset's zigzag plus one.
    pub(super) fn opt_date(&mut self, d: Option<NaiveDate>) {
        match d {
            None => self.uint(0),
            Some(d) => self.uint(varint::zigzag((day(d) - self.base).into()) + 1),
        }
    }

    /// A state's CWT record months ([`openptl_rules::cwt::record_months`])
    /// as the first and the last of them: 0 for none, else the first's
    /// zigzagged offset from `base` plus one, then the months from the
    /// first to the last.
    pub(super) fn record_months(&mut self, months: Vec<Period>, base: Period) {
        match (months.iter().min(), months.iter().max()) {
            (Some(first), Some(last)) => {
                let first = first.number();
                self.uint(varint::zigzag(first - base.number()) + 1);
                self.uint(u64::try_from(last.number() - first).unwrap_or(0));
            }
            _ => self.uint(0),
        }
    }

    pub(super) fn text(&mut self, t: &str) {
        self.uint(t.len() as u64);
        self.out.extend_from_slice(t.as_bytes());
    }

    pub(super) fn ods(&mut self, code: &OdsCode) {
        self.text(code.as_str());
    }

    pub(super) fn option<T>(&mut self, value: Option<T>, f: impl FnOnce(&mut Writer, T)) {
        match value {
            None => self.byte(0),
            Some(v) => {
                self.byte(1);
                f(self, v);
            }
        }
    }

    pub(super) fn clock(&mut self, c: &Clock) {
        let Clock {
            status,
            start,
            stop,
            stop_reason,
            adjustment_days,
            days,
            target_days,
            target_date,
            allocation,
        } = c;
        self.byte(status.index());
        self.opt_date(*start);
        self.opt_date(*stop);
        self.option(stop_reason.as_ref(), |w, r| w.byte(r.index()));
        self.int(*adjustment_days);
        self.int(*days);
        self.int(*target_days);
        self.opt_date(*target_date);
        self.option(allocation.as_ref(), |w, shares| {
            w.uint(shares.len() as u64);
            for a in shares {
                w.ods(&a.trust);
                w.out.extend_from_slice(&a.share.to_le_bytes());
                w.flag(a.breached);
            }
        });
    }
}

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
    pub(super) base: i32,
}

/// What a packed state's first bytes say.
pub(super) struct Head<'a> {
    pub(super) version: u64,
    pub(super) span: (NaiveDate, NaiveDate),
    pub(super) settled: Option<Settled>,
    /// Whether the state is on the PTL.
    pub(super) on_ptl: bool,
    /// The earlier states' list (read by [`Reader::earlier`]).
    pub(super) earlier: &'a [u8],
    /// The state's fields, after the head (what the earlier states are
    /// compressed against).
    pub(super) fields: &'a [u8],
}

pub(super) const SHORT: &str = "a packed state is cut short";

/// The longest an earlier state's packed bytes may say they are (a guard
/// against damaged bytes asking for a huge allocation; a state is a few
/// hundred bytes).
const EARLIER_MOST_BYTES: usize = 1 << 20;

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            at: 0,
            base: 0,
        }
    }

    /// The layout byte, the date span, the version and the events'
    /// settled dates (offsets from the span's first day).
    pub(super) fn head(&mut self) -> Result<Head<'a>, Unreadable> {
        if self.byte()? != LAYOUT {
            return Err("a packed state of another layout".into());
        }
        let span = (self.day()?, self.day()?);
        let version = self.uint()?;
        let base = day(span.0);
        let settled = self.option(|r| {
            let mut date = || {
                i32::try_from(r.int()?)
                    .ok()
                    .and_then(|offset| offset.checked_add(base))
                    .and_then(date_of_day)
                    .ok_or_else(|| Unreadable::from("a packed settled date is out of range"))
            };
            Ok(Settled {
                first: date()?,
                from: date()?,
            })
        })?;
        let on_ptl = self.flag()?;
        // The earlier states: each its last day (an offset) and the first
        // its events are settled by (days before it), whether it is on the
        // PTL, its record months, and its own packed bytes, skipped here.
        let from = self.at;
        for _ in 0..self.count()? {
            self.int()?;
            self.int()?;
            self.flag()?;
            self.record_months()?;
            self.uint()?;
            let len = self.count()?;
            self.take(len)?;
        }
        let earlier = &self.bytes[from..self.at];
        Ok(Head {
            version,
            span,
            settled,
            on_ptl,
            earlier,
            fields: &self.bytes[self.at..],
        })
    }

    /// The earlier state that moves to `as_of`, in a list a [`Head`] gave
    /// (`base`: the span's first day number; `fields`: the head's, which
    /// the earlier states are compressed against); when `recorded` names a
    /// month, only one with CWT records in it is unpacked (decision 171).
    pub(super) fn earlier(
        list: &'a [u8],
        base: i32,
        fields: &[u8],
        as_of: NaiveDate,
        recorded: Option<Period>,
    ) -> Result<Option<EarlierState>, Unreadable> {
        let mut r = Reader::new(list);
        let base_month = date_of_day(base)
            .map(Period::of)
            .ok_or("a packed date is out of range")?;
        let date = |offset: i64| {
            i32::try_from(offset)
                .ok()
                .and_then(|offset| offset.checked_add(base))
                .and_then(date_of_day)
                .ok_or_else(|| Unreadable::from("a packed earlier date is out of range"))
        };
        for _ in 0..r.count()? {
            let until = date(r.int()?)?;
            let back = r.int()?;
            let from = i32::try_from(back)
                .ok()
                .and_then(|back| day(until).checked_sub(back))
                .and_then(date_of_day)
                .ok_or("a packed earlier date is out of range")?;
            let on_ptl = r.flag()?;
            let months = r.record_months()?;
            let raw = usize::try_from(r.uint()?).unwrap_or(usize::MAX);
            let len = r.count()?;
            let compressed = r.take(len)?;
            if as_of > until || as_of < from {
                continue;
            }
            if let Some(month) = recorded {
                let month = month.number() - base_month.number();
                if !months.is_some_and(|(first, last)| first <= month && month <= last) {
                    return Ok(Some(EarlierState::NoRecordsIn));
                }
            }
            if raw > EARLIER_MOST_BYTES {
                return Err("a packed earlier state is too long".into());
            }
            let bytes = lz4_flex::block::decompress_with_dict(compressed, raw, fields)
                .map_err(|_| Unreadable::from("a packed earlier state does not decompress"))?;
            return Ok(Some(EarlierState::Moves(on_ptl, bytes)));
        }
        Ok(None)
    }

    /// Record months as [`Writer::record_months`] wrote them: the first
    /// and the last as offsets from the base month (`None`: none).
    fn record_months(&mut self) -> Result<Option<(i64, i64)>, Unreadable> {
        let first = match self.uint()? {
            0 => return Ok(None),
            n => varint::unzigzag(n - 1),
        };
        let months = i64::try_from(self.uint()?).map_err(|_| "a packed month is out of range")?;
        let last = first
            .checked_add(months)
            .ok_or("a packed month is out of range")?;
        Ok(Some((first, last)))
    }

    /// A date written as its day number (any date chrono has, before year
    /// 1 included: the numbers are signed).
    pub(super) fn day(&mut self) -> Result<NaiveDate, Unreadable> {
        i32::try_from(self.int()?)
            .ok()
            .and_then(date_of_day)
            .ok_or_else(|| "a packed date is out of range".into())
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], Unreadable> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(SHORT)?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    pub(super) fn byte(&mut self) -> Result<u8, Unreadable> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn flag(&mut self) -> Result<bool, Unreadable> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("a packed flag is neither 0 nor 1".into()),
        }
    }

    pub(super) fn code<T>(&mut self, from_index: fn(u8) -> Option<T>) -> Result<T, Unreadable> {
        from_index(self.byte()?).ok_or_else(|| "a packed code is unknown".into())
    }

    pub(super) fn uint(&mut self) -> Result<u64, Unreadable> {
        let (v, used) = varint::read(&self.bytes[self.at..])
            .ok_or("a packed number is cut short or too long")?;
        self.at += used;
        Ok(v)
    }

    pub(super) fn int(&mut self) -> Result<i64, Unreadable> {
        self.uint().map(varint::unzigzag)
    }

    pub(super) fn count(&mut self) -> Result<usize, Unreadable> {
        let n = self.uint()?;
        // Every item takes at least one byte: a larger count is damage.
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(SHORT.into());
        }
        Ok(n as usize)
    }

    pub(super) fn offset_date(&self, offset: i64) -> Result<NaiveDate, Unreadable> {
        i32::try_from(offset)
            .ok()
            .and_then(|o| self.base.checked_add(o))
            .and_then(date_of_day)
            .ok_or_else(|| "a packed date is out of range".into())
    }

    pub(super) fn date(&mut self) -> Result<NaiveDate, Unreadable> {
        let offset = self.int()?;
        self.offset_date(offset)
    }

    pub(super) fn opt_date(&mut self) -> Result<Option<NaiveDate>, Unreadable> {
        match self.uint()? {
            0 => Ok(None),
            v => self.offset_date(varint::unzigzag(v - 1)).map(Some),
        }
    }

    pub(super) fn text(&mut self) -> Result<String, Unreadable> {
        let n = self.count()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a packed text is not UTF-8".into())
    }

    /// Passes over a text (or an ODS code) unread.
    pub(super) fn skip_text(&mut self) -> Result<(), Unreadable> {
        let n = self.count()?;
        self.take(n).map(drop)
    }

    pub(super) fn ods(&mut self) -> Result<OdsCode, Unreadable> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?)
            .ok()
            .and_then(OdsCode::parse_referrer)
            .ok_or_else(|| "a packed ODS code fails".into())
    }

    pub(super) fn option<T>(
        &mut self,
        f: impl FnOnce(&mut Reader<'a>) -> Result<T, Unreadable>,
    ) -> Result<Option<T>, Unreadable> {
        match self.byte()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err("a packed option is neither 0 nor 1".into()),
        }
    }

    /// A state's FDS, 31-day and 62-day clocks, in that order.
    pub(super) fn clocks(&mut self) -> Result<Clocks, Unreadable> {
        Ok(Clocks {
            fds: self.clock()?,
            d31: self.clock()?,
            d62: self.clock()?,
        })
    }

    pub(super) fn clock(&mut self) -> Result<Clock, Unreadable> {
        Ok(Clock {
            status: self.code(ClockStatus::from_index)?,
            start: self.opt_date()?,
            stop: self.opt_date()?,
            stop_reason: self.option(|r| r.code(StopReason::from_index))?,
            adjustment_days: self.int()?,
            days: self.int()?,
            target_days: self.int()?,
            target_date: self.opt_date()?,
            allocation: self.option(|r| {
                let count = r.count()?;
                let mut shares = Vec::with_capacity(count);
                for _ in 0..count {
                    shares.push(Allocation {
                        trust: r.ods()?,
                        share: f64::from_le_bytes(r.take(8)?.try_into().expect("eight bytes")),
                        breached: r.flag()?,
                    });
                }
                Ok(shares)
            })?,
        })
    }
}
