//! The annual technology-contract turnover (技术合同成交额): running figures per year and
//! breakdown cell, fed by turnover lines.

use super::lines::{CellKey, Output, TurnoverCell, TurnoverFigures, TurnoverLine};

/// A cell: its year, its dimension (by its place in `TurnoverLine::DIMENSIONS`, which hashes
/// and compares more cheaply than the dimension's name), its key within the dimension.
type Cell = (i32, u8, CellKey);

#[derive(Debug, Clone, Default)]
pub(super) struct Turnover {
    /// Hashed, not ordered: the fold touches six cells per line, and only a statement
    /// (`cells_of`) needs them in order.
    cells: super::Map<Cell, TurnoverFigures>,
}

impl Turnover {
    /// Adds a line to its six cells; pushes their new figures to `outputs` (built as an array
    /// first, they were copied twice more).
    pub(super) fn add(&mut self, line: &TurnoverLine, outputs: &mut Vec<Output>) {
        let year = line.year();
        for ((index, dimension), key) in (0u8..).zip(TurnoverLine::DIMENSIONS).zip(line.cell_keys()) {
            let figures = self.cells.entry((year, index, key)).or_default();
            figures.add(line);
            assert!(figures.contracts >= 0, "a cell never counts fewer than no contracts");
            outputs.push(Output::TurnoverCell(TurnoverCell {
                year,
                dimension,
                key,
                figures: figures.clone(),
                position: line.position,
            }));
        }
    }

    /// The cells of `year`, ordered by dimension and key.
    pub(super) fn cells_of(&self, year: i32) -> Vec<(&'static str, String, TurnoverFigures)> {
        let mut cells: Vec<_> = self
            .cells
            .iter()
            .filter(|((y, _, _), _)| *y == year)
            .map(|((_, d, k), f)| (TurnoverLine::DIMENSIONS[usize::from(*d)], k.to_string(), f.clone()))
            .collect();
        cells.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        cells
    }
}
