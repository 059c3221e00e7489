//! The annual technology-contract turnover (技术合同成交额): running figures per year and
//! breakdown cell, fed by turnover lines.

use std::collections::BTreeMap;

use super::lines::{TurnoverCell, TurnoverFigures, TurnoverLine};

#[derive(Debug, Clone, Default)]
pub(super) struct Turnover {
    cells: BTreeMap<(i32, &'static str, String), TurnoverFigures>,
}

impl Turnover {
    /// Adds a line to its six cells; returns their new figures.
    pub(super) fn add(&mut self, line: &TurnoverLine) -> Vec<TurnoverCell> {
        let year = line.year();
        line.cells()
            .into_iter()
            .map(|(dimension, key)| {
                let figures = self.cells.entry((year, dimension, key.clone())).or_default();
                figures.add(line);
                assert!(figures.contracts >= 0, "a cell never counts fewer than no contracts");
                TurnoverCell { year, dimension, key, figures: figures.clone(), position: line.position }
            })
            .collect()
    }

    pub(super) fn cells_of(&self, year: i32) -> Vec<(&'static str, String, TurnoverFigures)> {
        self.cells
            .range((year, "", String::new())..)
            .take_while(|((y, _, _), _)| *y == year)
            .map(|((_, d, k), f)| (*d, k.clone(), f.clone()))
            .collect()
    }
}
