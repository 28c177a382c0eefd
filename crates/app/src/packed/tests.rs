//! Tests of packing: round trips (property-tested), cut and malformed bytes.

use super::bytes::*;
use super::*;
use openptl_rules::forecast::observations;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn date() -> impl Strategy<Value = NaiveDate> {
    // Mostly near a referral (corrections move dates either way), and
    // now and then anything chrono has: input may carry any year.
    let near = (-4000i64..4000)
        .prop_map(|d| NaiveDate::from_ymd_opt(2025, 6, 1).unwrap() + chrono::Duration::days(d));
    let any = (NaiveDate::MIN.num_days_from_ce()..=NaiveDate::MAX.num_days_from_ce())
        .prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).unwrap());
    let edges = prop::sample::select(vec![
        NaiveDate::MIN,
        NaiveDate::MAX,
        NaiveDate::from_ymd_opt(0, 1, 1).unwrap(),
    ]);
    prop_oneof![8 => near, 1 => any, 1 => edges]
}

fn ods() -> impl Strategy<Value = OdsCode> {
    "[A-Z0-9]{3,6}".prop_map(|c| OdsCode::parse_referrer(&c).unwrap())
}

fn nhs() -> impl Strategy<Value = NhsNumber> {
    prop::sample::select(vec!["9434765919", "9876543210", "4010232137", "0000000000"])
        .prop_map(|n| NhsNumber::parse(n).unwrap())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", ".{0,300}"]
}

fn days() -> impl Strategy<Value = i64> {
    prop_oneof![-400i64..400, any::<i64>()]
}

fn clock() -> impl Strategy<Value = Clock> {
    let allocation =
        (ods(), 0.0f64..=1.0, any::<bool>()).prop_map(|(trust, share, b)| Allocation {
            trust,
            share,
            breached: b,
        });
    (
        prop::sample::select(ClockStatus::ALL),
        prop::option::of(date()),
        prop::option::of(date()),
        prop::option::of(prop::sample::select(StopReason::ALL)),
        (days(), days(), days()),
        prop::option::of(date()),
        prop::option::of(prop::collection::vec(allocation, 0..4)),
    )
        .prop_map(
            |(status, start, stop, stop_reason, (adj, days, target), target_date, allocation)| {
                Clock {
                    status,
                    start,
                    stop,
                    stop_reason,
                    adjustment_days: adj,
                    days,
                    target_days: target,
                    target_date,
                    allocation,
                }
            },
        )
}

fn milestone(names: Vec<Arc<str>>) -> impl Strategy<Value = Milestone> {
    let name = prop_oneof![
        prop::sample::select(names),
        text().prop_map(|t| Arc::from(t.as_str()))
    ];
    (
        name,
        days(),
        date(),
        prop::option::of(date()),
        prop::sample::select(MilestoneStatus::ALL),
    )
        .prop_map(|(name, due_day, due_date, met_on, status)| Milestone {
            name,
            due_day,
            due_date,
            met_on,
            status,
        })
}

fn note() -> impl Strategy<Value = Note> {
    (
        date(),
        text(),
        prop::option::of(text()),
        prop::option::of(date()),
        prop::option::of(text()),
        any::<bool>(),
    )
        .prop_map(
            |(occurred_on, text, next_action, next_action_due, owner, escalated)| Note {
                occurred_on,
                text,
                next_action,
                next_action_due,
                owner,
                escalated,
            },
        )
}

fn state(names: Vec<Arc<str>>) -> impl Strategy<Value = PathwayState> {
    let who = (
        nhs(),
        ods(),
        ods(),
        prop::sample::select(TumourSite::ALL),
        prop::sample::select(Route::ALL),
        date(),
        prop::sample::select(PathwayStatus::ALL),
        any::<bool>(),
        date(),
    );
    let fit = (
        prop::sample::select(FitBand::ALL),
        prop::option::of(date()),
        prop::option::of(
            (date(), prop::sample::select(ExclusionReason::ALL))
                .prop_map(|(date, reason)| FdsExclusion { date, reason }),
        ),
    );
    let transfer =
        (date(), ods(), ods()).prop_map(|(occurred_on, from_trust, to_trust)| Transfer {
            occurred_on,
            from_trust,
            to_trust,
        });
    let plan = || prop::option::of(text().prop_map(|t| Arc::<str>::from(t.as_str())));
    let next_breach = (prop::sample::select(ClockKind::ALL), plan(), date()).prop_map(
        |(clock, plan_id, date)| NextBreach {
            clock,
            plan_id,
            date,
        },
    );
    let period = (
        prop::sample::select(TreatmentKind::ALL),
        plan(),
        prop::sample::select(Modality::ALL),
        prop::sample::select(PeriodStartReason::ALL),
        prop::option::of(clock()),
        prop::option::of(prop::sample::select(TreatmentSetting::ALL)),
        prop::option::of(ods()),
    );
    let seen = prop::option::of(
        (date(), prop::sample::select(SeenMedium::ALL), ods()).prop_map(|(date, medium, trust)| {
            SeenAt {
                date,
                medium,
                trust,
            }
        }),
    );
    let record = (
        any::<bool>(),
        prop::option::of(prop::sample::select(NhsNumberStatus::ALL)),
        prop::option::of(text()),
        days(),
        prop::option::of(date()),
    )
        .prop_map(
            |(
                referrer_given,
                nhs_number_status,
                primary_diagnosis,
                first_seen_adjustment_days,
                transfer_to_treatment,
            )| {
                RecordFacts {
                    referrer_given,
                    nhs_number_status,
                    primary_diagnosis,
                    first_seen_adjustment_days,
                    transfer_to_treatment,
                }
            },
        );
    let lower_gi = (
        prop::collection::vec(
            (date(), prop::sample::select(FitBand::ALL))
                .prop_map(|(on, band)| FitResult { on, band }),
            0..4,
        ),
        prop::option::of(date()),
        prop::collection::vec(
            (
                date(),
                prop::sample::select(DiagnosticTest::ALL),
                any::<bool>(),
            )
                .prop_map(|(on, test, done)| GiTest {
                    on,
                    test,
                    stage: if done {
                        TestStage::Performed
                    } else {
                        TestStage::Requested
                    },
                }),
            0..7,
        ),
    )
        .prop_map(|(fit_results, triaged_on, tests)| LowerGiFacts {
            fit_results,
            triaged_on,
            tests,
        });
    let rest = (
        prop::option::of(next_breach),
        any::<bool>(),
        prop::collection::vec(transfer, 0..3),
        prop::option::of(date()),
        prop::option::of(note()),
    );
    (
        who,
        fit,
        (clock(), clock(), clock()),
        prop::collection::vec(milestone(names), 0..9),
        rest,
        prop::collection::vec(period, 0..4),
        (seen, record, lower_gi),
    )
        .prop_map(
            |(
                (nhs, trust, referrer, site, route, referred_on, status, on_ptl, as_of),
                (fit_band, fit_on, fds_exclusion),
                (fds, d31, d62),
                milestones,
                (next_breach, transferred, transfers, handover_date, last_note),
                periods,
                (first_seen, record, lower_gi),
            )| PathwayState {
                nhs_number: nhs,
                trust,
                referring_trust: referrer,
                tumour_site: site,
                route,
                referred_on,
                status,
                on_ptl,
                as_of,
                fit_band,
                fit_on,
                fds_exclusion,
                // A period without a clock of its own is the first (`d31`).
                treatment_periods: periods
                    .into_iter()
                    .map(
                        |(
                            treatment,
                            plan_id,
                            modality,
                            start_reason,
                            clock,
                            care_setting,
                            treated_by,
                        )| {
                            TreatmentPeriod {
                                treatment,
                                plan_id,
                                modality,
                                start_reason,
                                care_setting,
                                treated_by,
                                clock: clock.unwrap_or_else(|| d31.clone()),
                            }
                        },
                    )
                    .collect(),
                clocks: Clocks { fds, d31, d62 },
                milestones,
                next_breach,
                transferred,
                transfers,
                handover_date,
                last_note,
                first_seen,
                record,
                lower_gi,
            },
        )
}

fn names() -> Vec<Arc<str>> {
    Packer::new(&RulesConfig::defaults()).names
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_state_unpacks_to_itself(
        state in state(names()),
        version in any::<u64>(),
        settled in prop::option::of((-400i64..400, 0i64..800)),
    ) {
        let packer = Packer::new(&RulesConfig::defaults());
        // Near the ends of the calendar there is no such date: none then.
        let days = |n: i64| state.referred_on.checked_add_signed(chrono::Duration::days(n));
        let settled = settled.and_then(|(first, from)| {
            Some(Settled { first: days(first)?, from: days(first + from)? })
        });
        let packed = packer.pack(&state, version, settled);
        prop_assert_eq!(packed.span(), state.date_span());
        // What a split reads beside the bytes, as their head says (dates
        // outside what it keeps are read from the head).
        let from = settled.map(|s| s.from);
        prop_assert_eq!(packed.on_ptl_settled_from(), (state.on_ptl, from));
        prop_assert_eq!(packed.tumour_site(), state.tumour_site);
        let read = Packed::from_bytes(packed.as_bytes()).unwrap();
        prop_assert_eq!(&read, &packed);
        let packed = read;
        prop_assert_eq!(packed.span(), state.date_span());
        prop_assert_eq!(packed.on_ptl_settled_from(), (state.on_ptl, from));
        prop_assert_eq!(packed.tumour_site(), state.tumour_site);
        prop_assert_eq!(packer.tumour_site_of(packed.as_bytes()), Ok(state.tumour_site));
        prop_assert_eq!(packed.settled(), settled);
        let (back, v) = packer.unpack(&packed).unwrap();
        prop_assert_eq!(v, version);
        // NhsNumber has no Debug of its digits; compare it on its own.
        prop_assert_eq!(back.nhs_number.as_str(), state.nhs_number.as_str());
        prop_assert_eq!(&back, &state);
        // A packer with names of its own (one core's) unpacks it the same.
        let (own, v) = packer.with_own_names().unpack_bytes(packed.as_bytes()).unwrap();
        prop_assert_eq!(v, version);
        prop_assert_eq!(&own, &state);
        // Only what its clocks are observed with, the same observations.
        let fields = packer.unpack_clock_fields(packed.as_bytes()).unwrap();
        let observed: Vec<_> = observations(&state).collect();
        prop_assert_eq!(fields.observations().collect::<Vec<_>>(), observed);
    }

    #[test]
    fn damaged_bytes_are_refused_or_read_as_some_state(
        state in state(names()),
        at in any::<prop::sample::Index>(),
        cut in any::<bool>(),
    ) {
        let packer = Packer::new(&RulesConfig::defaults());
        let bytes = packer.pack(&state, 3, None).as_bytes().to_vec();
        let at = at.index(bytes.len());
        let damaged = if cut {
            bytes[..at].to_vec()
        } else {
            let mut b = bytes.clone();
            b[at] ^= 0x5a;
            b
        };
        // Never a panic; a cut is always caught.
        let out = Packed::from_bytes(&damaged).and_then(|p| packer.unpack(&p));
        if cut {
            prop_assert!(out.is_err());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Earlier states come back whole from their compressed bytes, for a
    /// date in their range, and damaged bytes never panic.
    #[test]
    fn earlier_states_unpack_to_themselves(
        state in state(names()),
        earlier in prop::collection::vec(state(names()), 0..3),
        at in any::<prop::sample::Index>(),
    ) {
        let packer = Packer::new(&RulesConfig::defaults());
        let base = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        // Each earlier state: settled from day 10k, valid until day 10k + 5.
        let kept: Vec<(Earlier, PathwayState)> = earlier
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                let from = base + chrono::Days::new(10 * k as u64);
                let e = Earlier {
                    on: from,
                    until: from + chrono::Days::new(5),
                    settled: Settled { first: base, from },
                };
                (e, s)
            })
            .collect();
        let packed = packer.pack_with_earlier(&state, 7, None, &kept);
        let (back, _) = packer.unpack(&packed).unwrap();
        prop_assert_eq!(back, state.clone());
        // Past the earlier states, the clocks are read as they are.
        let fields = packer.unpack_clock_fields(packed.as_bytes()).unwrap();
        prop_assert_eq!(
            fields.observations().collect::<Vec<_>>(),
            observations(&state).collect::<Vec<_>>()
        );
        // An earlier state's last day is an offset from the state's first:
        // at the ends of the calendar it may not fit, and then the pathway
        // is read back instead (its first settled day is a few days back
        // from its last here).
        let fits = |from: NaiveDate, d: NaiveDate| i32::try_from((d - from).num_days()).is_ok();
        for (e, s) in &kept {
            if !fits(state.date_span().0, e.until) {
                continue;
            }
            let found = packed.earlier(e.until);
            prop_assert!(found.is_some(), "no earlier state for {:?}", e);
            let (on_ptl, bytes) = found.expect("checked");
            prop_assert_eq!(on_ptl, s.on_ptl);
            let (back, version) = packer.unpack_bytes(&bytes).unwrap();
            prop_assert_eq!(version, 7);
            prop_assert_eq!(back.nhs_number.as_str(), s.nhs_number.as_str());
            prop_assert_eq!(&back, s);
            // A view of one month's CWT records unpacks it exactly when the
            // month lies between its first and last record month, so
            // always when it has records in the month (decision 171).
            let months = openptl_rules::cwt::record_months(s);
            let probes = months
                .iter()
                .flat_map(|m| [-1, 0, 1].map(|by| month_after(*m, by)))
                .chain([Period::of(e.until)]);
            for month in probes {
                let found = earlier_of(packed.as_bytes(), e.until, Some(month));
                let between = months.iter().min().is_some_and(|first| *first <= month)
                    && months.iter().max().is_some_and(|last| month <= *last);
                match found {
                    Some(EarlierState::Moves(on, b)) => {
                        prop_assert!(between, "{month} unpacked, outside {months:?}");
                        prop_assert_eq!(on, on_ptl);
                        prop_assert_eq!(&b, &bytes);
                    }
                    Some(EarlierState::NoRecordsIn) => {
                        prop_assert!(!between, "{month} passed over, within {months:?}");
                    }
                    None => prop_assert!(false, "no earlier state for {:?}", e),
                }
            }
        }
        // Damaged: any byte flipped or the bytes cut, never a panic.
        let bytes = packed.as_bytes();
        let at = at.index(bytes.len());
        let mut flipped = bytes.to_vec();
        flipped[at] ^= 0x5a;
        for damaged in [flipped, bytes[..at].to_vec()] {
            if let Ok(p) = Packed::from_bytes(&damaged) {
                for (e, _) in &kept {
                    if let Some((_, b)) = p.earlier(e.until) {
                        let _ = packer.unpack_bytes(&b);
                    }
                }
                let _ = packer.unpack(&p);
            }
            let _ = packer.unpack_clock_fields(&damaged);
        }
    }
}

/// The month `by` months after `month` (before it when negative).
fn month_after(month: Period, by: i64) -> Period {
    Period::from_number(i32::try_from(month.number() + by).unwrap())
}

#[test]
fn the_date_table_agrees_with_chrono() {
    assert_eq!(
        NaiveDate::from_num_days_from_ce_opt(FIRST_DAY),
        NaiveDate::from_ymd_opt(1950, 1, 1)
    );
    assert_eq!(DATES.last().copied(), NaiveDate::from_ymd_opt(2149, 12, 31));
    for d in (FIRST_DAY - 1000..FIRST_DAY + 80_000).chain([1, -5, i32::MAX, i32::MIN]) {
        assert_eq!(
            date_of_day(d),
            NaiveDate::from_num_days_from_ce_opt(d),
            "day {d}"
        );
    }
}

#[test]
fn milestone_names_are_shared_with_the_rules() {
    let config = RulesConfig::defaults();
    let packer = Packer::new(&config);
    let name = config.milestones.template[0].milestone[0].name.clone();
    let mut state = state(names())
        .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
        .unwrap()
        .current();
    state.milestones.truncate(0);
    state.milestones.push(Milestone {
        name: name.clone(),
        due_day: 3,
        due_date: state.referred_on,
        met_on: None,
        status: MilestoneStatus::Pending,
    });
    let (back, _) = packer.unpack(&packer.pack(&state, 1, None)).unwrap();
    assert!(Arc::ptr_eq(&back.milestones[0].name, &name));
    // One core's packer: the same name, not shared with the rules'.
    let own = packer.with_own_names();
    let (mine, _) = own.unpack(&packer.pack(&state, 1, None)).unwrap();
    assert_eq!(mine.milestones[0].name, name);
    assert!(!Arc::ptr_eq(&mine.milestones[0].name, &name));
    let (again, _) = own.unpack(&packer.pack(&state, 1, None)).unwrap();
    assert!(Arc::ptr_eq(
        &mine.milestones[0].name,
        &again.milestones[0].name
    ));
}
